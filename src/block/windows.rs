//! Windows backend: writes scripts for Windows hosts that cannot run
//! stratumguard themselves, one for PowerShell (`New-NetFirewallRule`) and
//! an alternative for `netsh advfirewall`.
//!
//! Each script first removes every rule it made before, then creates an
//! outbound and an inbound block rule per entry (and for the blocked ports),
//! so running the newest script always leaves exactly the current list. The
//! PowerShell rules are named `stratumguard-block-<addr>-<len>-out|in` and
//! grouped under `stratumguard`; the netsh rules all share the name
//! `stratumguard-block`, because netsh deletes by name only.
//!
//! Windows Firewall rules have no timeouts: an expired entry is gone from the
//! next script written, and stays on the Windows host until that script runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;

use super::backend::{Action, Backend, Change, Desired, Plan};
use super::BlockError;

pub const GROUP: &str = "stratumguard";
pub const PS1_NAME: &str = "stratumguard-block.ps1";
pub const NETSH_NAME: &str = "stratumguard-block-netsh.cmd";

/// Where the scripts go.
pub struct Windows {
    pub dir: PathBuf,
}

fn all_nets(desired: &Desired) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = desired.hosts().map(|(n, _)| *n).collect();
    nets.extend(desired.networks().into_iter().map(|(n, _)| n));
    nets.sort();
    nets
}

fn rule_id(net: &IpNet) -> String {
    format!("stratumguard-block-{}-{}", net.addr(), net.prefix_len())
}

/// The PowerShell script, with CRLF line ends as Windows tools expect.
pub fn powershell(desired: &Desired) -> String {
    let mut l: Vec<String> = vec![
        "# stratumguard blocklist for Windows Firewall (PowerShell, run as Administrator).".into(),
        format!("# Re-running replaces all rules in the group '{GROUP}' with this list."),
        "$ErrorActionPreference = 'Stop'".into(),
        format!(
            "Get-NetFirewallRule -Group '{GROUP}' -ErrorAction SilentlyContinue | Remove-NetFirewallRule"
        ),
    ];
    for net in all_nets(desired) {
        let id = rule_id(&net);
        l.push(format!("# block {net}"));
        for (dir, tag) in [("Outbound", "out"), ("Inbound", "in")] {
            l.push(format!(
                "New-NetFirewallRule -Name '{id}-{tag}' -DisplayName '{id}-{tag}' -Group '{GROUP}' \
                 -Direction {dir} -Action Block -RemoteAddress '{net}' | Out-Null"
            ));
        }
    }
    if !desired.ports.is_empty() {
        let ports = desired.ports_text("-");
        l.push(format!("# block tcp ports {ports}"));
        for (dir, tag) in [("Outbound", "out"), ("Inbound", "in")] {
            l.push(format!(
                "New-NetFirewallRule -Name 'stratumguard-block-ports-{tag}' \
                 -DisplayName 'stratumguard-block-ports-{tag}' -Group '{GROUP}' -Direction {dir} \
                 -Action Block -Protocol TCP -RemotePort {ports} | Out-Null"
            ));
        }
    }
    l.push(String::new());
    l.join("\r\n")
}

/// The netsh alternative, with CRLF line ends.
pub fn netsh(desired: &Desired) -> String {
    let mut l: Vec<String> = vec![
        "@echo off".into(),
        "rem stratumguard blocklist for Windows Firewall (netsh, run as Administrator).".into(),
        "rem Re-running replaces all rules named stratumguard-block with this list.".into(),
        "netsh advfirewall firewall delete rule name=\"stratumguard-block\" >nul".into(),
    ];
    for net in all_nets(desired) {
        l.push(format!("rem block {net}"));
        for dir in ["out", "in"] {
            l.push(format!(
                "netsh advfirewall firewall add rule name=\"stratumguard-block\" dir={dir} \
                 action=block remoteip={net} description=\"{}\"",
                rule_id(&net)
            ));
        }
    }
    if !desired.ports.is_empty() {
        let ports = desired.ports_text("-");
        l.push(format!("rem block tcp ports {ports}"));
        for dir in ["out", "in"] {
            l.push(format!(
                "netsh advfirewall firewall add rule name=\"stratumguard-block\" dir={dir} \
                 action=block protocol=TCP remoteport={ports} description=\"stratumguard-block-ports\""
            ));
        }
    }
    l.push(String::new());
    l.join("\r\n")
}

/// The entries an earlier script blocked, from its `# block` markers.
fn previous(script: &str) -> BTreeMap<IpNet, Option<u32>> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("# block ")?.trim().parse::<IpNet>().ok())
        .map(|n| (n, None))
        .collect()
}

impl Backend for Windows {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        let ps1_path = self.dir.join(PS1_NAME);
        let netsh_path = self.dir.join(NETSH_NAME);
        let ps1 = powershell(desired);
        let cmd = netsh(desired);
        let old_ps1 = std::fs::read_to_string(&ps1_path).unwrap_or_default();
        let old_cmd = std::fs::read_to_string(&netsh_path).unwrap_or_default();
        if old_ps1 == ps1 && old_cmd == cmd {
            return Ok(Plan::default());
        }
        let before = previous(&old_ps1);
        let after = previous(&ps1);
        let mut changes: Vec<Change> = after
            .keys()
            .filter(|n| !before.contains_key(n))
            .map(|n| Change::Add(*n, None))
            .collect();
        changes.extend(
            before
                .keys()
                .filter(|n| !after.contains_key(n))
                .map(|n| Change::Remove(*n)),
        );
        changes.push(Change::Rules(format!(
            "write {} and {}",
            ps1_path.display(),
            netsh_path.display()
        )));
        Ok(Plan {
            changes,
            actions: vec![
                Action::Write {
                    path: ps1_path,
                    contents: ps1,
                },
                Action::Write {
                    path: netsh_path,
                    contents: cmd,
                },
            ],
        })
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        // An empty list: the scripts then only remove what earlier ones made.
        self.plan(&Desired {
            max: 0,
            ..Desired::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::DesiredEntry;
    use super::*;

    fn desired() -> Desired {
        let mut d = Desired {
            max: 10,
            ..Desired::default()
        };
        for n in ["192.0.2.1/32", "2001:db8::7/128", "198.51.100.0/24"] {
            d.entries.insert(
                n.parse().unwrap(),
                DesiredEntry {
                    timeout: Some(60),
                    expires_at: Some(1),
                },
            );
        }
        d.ports = vec!["3333".parse().unwrap(), "14444-14450".parse().unwrap()];
        d
    }

    #[test]
    fn the_powershell_script_is_exactly_this() {
        let expected = "\
# stratumguard blocklist for Windows Firewall (PowerShell, run as Administrator).\r\n\
# Re-running replaces all rules in the group 'stratumguard' with this list.\r\n\
$ErrorActionPreference = 'Stop'\r\n\
Get-NetFirewallRule -Group 'stratumguard' -ErrorAction SilentlyContinue | Remove-NetFirewallRule\r\n\
# block 192.0.2.1/32\r\n\
New-NetFirewallRule -Name 'stratumguard-block-192.0.2.1-32-out' -DisplayName 'stratumguard-block-192.0.2.1-32-out' -Group 'stratumguard' -Direction Outbound -Action Block -RemoteAddress '192.0.2.1/32' | Out-Null\r\n\
New-NetFirewallRule -Name 'stratumguard-block-192.0.2.1-32-in' -DisplayName 'stratumguard-block-192.0.2.1-32-in' -Group 'stratumguard' -Direction Inbound -Action Block -RemoteAddress '192.0.2.1/32' | Out-Null\r\n\
# block 198.51.100.0/24\r\n\
New-NetFirewallRule -Name 'stratumguard-block-198.51.100.0-24-out' -DisplayName 'stratumguard-block-198.51.100.0-24-out' -Group 'stratumguard' -Direction Outbound -Action Block -RemoteAddress '198.51.100.0/24' | Out-Null\r\n\
New-NetFirewallRule -Name 'stratumguard-block-198.51.100.0-24-in' -DisplayName 'stratumguard-block-198.51.100.0-24-in' -Group 'stratumguard' -Direction Inbound -Action Block -RemoteAddress '198.51.100.0/24' | Out-Null\r\n\
# block 2001:db8::7/128\r\n\
New-NetFirewallRule -Name 'stratumguard-block-2001:db8::7-128-out' -DisplayName 'stratumguard-block-2001:db8::7-128-out' -Group 'stratumguard' -Direction Outbound -Action Block -RemoteAddress '2001:db8::7/128' | Out-Null\r\n\
New-NetFirewallRule -Name 'stratumguard-block-2001:db8::7-128-in' -DisplayName 'stratumguard-block-2001:db8::7-128-in' -Group 'stratumguard' -Direction Inbound -Action Block -RemoteAddress '2001:db8::7/128' | Out-Null\r\n\
# block tcp ports 3333,14444-14450\r\n\
New-NetFirewallRule -Name 'stratumguard-block-ports-out' -DisplayName 'stratumguard-block-ports-out' -Group 'stratumguard' -Direction Outbound -Action Block -Protocol TCP -RemotePort 3333,14444-14450 | Out-Null\r\n\
New-NetFirewallRule -Name 'stratumguard-block-ports-in' -DisplayName 'stratumguard-block-ports-in' -Group 'stratumguard' -Direction Inbound -Action Block -Protocol TCP -RemotePort 3333,14444-14450 | Out-Null\r\n";
        assert_eq!(powershell(&desired()), expected);
    }

    #[test]
    fn the_netsh_script_is_exactly_this() {
        let expected = "\
@echo off\r\n\
rem stratumguard blocklist for Windows Firewall (netsh, run as Administrator).\r\n\
rem Re-running replaces all rules named stratumguard-block with this list.\r\n\
netsh advfirewall firewall delete rule name=\"stratumguard-block\" >nul\r\n\
rem block 192.0.2.1/32\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=out action=block remoteip=192.0.2.1/32 description=\"stratumguard-block-192.0.2.1-32\"\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=in action=block remoteip=192.0.2.1/32 description=\"stratumguard-block-192.0.2.1-32\"\r\n\
rem block 198.51.100.0/24\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=out action=block remoteip=198.51.100.0/24 description=\"stratumguard-block-198.51.100.0-24\"\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=in action=block remoteip=198.51.100.0/24 description=\"stratumguard-block-198.51.100.0-24\"\r\n\
rem block 2001:db8::7/128\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=out action=block remoteip=2001:db8::7/128 description=\"stratumguard-block-2001:db8::7-128\"\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=in action=block remoteip=2001:db8::7/128 description=\"stratumguard-block-2001:db8::7-128\"\r\n\
rem block tcp ports 3333,14444-14450\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=out action=block protocol=TCP remoteport=3333,14444-14450 description=\"stratumguard-block-ports\"\r\n\
netsh advfirewall firewall add rule name=\"stratumguard-block\" dir=in action=block protocol=TCP remoteport=3333,14444-14450 description=\"stratumguard-block-ports\"\r\n";
        assert_eq!(netsh(&desired()), expected);
    }

    #[test]
    fn writing_the_same_list_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Windows {
            dir: dir.path().to_path_buf(),
        };
        let plan = w.plan(&desired()).unwrap();
        assert_eq!(
            plan.changes
                .iter()
                .filter(|c| matches!(c, Change::Add(..)))
                .count(),
            3
        );
        w.execute(&plan).unwrap();
        assert!(w.plan(&desired()).unwrap().is_empty());
        let flush = w.plan_flush().unwrap();
        assert_eq!(
            flush
                .changes
                .iter()
                .filter(|c| matches!(c, Change::Remove(_)))
                .count(),
            3
        );
    }
}
