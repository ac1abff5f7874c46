//! The one interface every firewall backend implements, and the plan it
//! works from.
//!
//! A backend is asked to make the firewall match a desired set of entries.
//! It first reads what it installed before and works out a [`Plan`]: the
//! changes in words (add, remove, renew) and the exact actions that would
//! make them (an nft JSON transaction, an `ipset restore` text, argv lists, a
//! file to write). `--dry-run` prints the plan; a real run executes it. An
//! empty plan means the firewall already matches, so applying the same
//! state twice changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::IpNet;

use super::state::PortRange;
use super::BlockError;

/// An installed entry is renewed when its desired expiry is later than the
/// installed one by more than this. Without slack, every re-sighting of a
/// pool would rewrite the firewall; a minute is noise against a day's TTL.
pub const RENEW_SLACK_SECS: u64 = 60;

/// One entry as a backend sees it: a parsed network and its lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredEntry {
    /// Seconds left to live; `None`: permanent.
    pub timeout: Option<u32>,
    /// Absolute expiry in Unix seconds; `None`: permanent.
    pub expires_at: Option<u64>,
}

/// What the firewall should hold.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub entries: BTreeMap<IpNet, DesiredEntry>,
    pub ports: Vec<PortRange>,
    /// The cap, used as the kernel set size (nft `size`, ipset `maxelem`).
    pub max: usize,
}

impl Desired {
    /// Single addresses (/32 and /128).
    pub fn hosts(&self) -> impl Iterator<Item = (&IpNet, &DesiredEntry)> {
        self.entries
            .iter()
            .filter(|(n, _)| n.prefix_len() == n.max_prefix_len())
    }

    /// Networks, without those contained in another desired network.
    ///
    /// Interval sets refuse overlapping elements. Known shortcoming: a
    /// network inside a larger one is left out while the larger one is in
    /// place, even when the inner one would live longer; it comes back at
    /// the next apply after the outer one expires, not at that instant.
    pub fn networks(&self) -> Vec<(IpNet, DesiredEntry)> {
        let nets: Vec<(IpNet, DesiredEntry)> = self
            .entries
            .iter()
            .filter(|(n, _)| n.prefix_len() < n.max_prefix_len())
            .map(|(n, e)| (*n, *e))
            .collect();
        nets.iter()
            .filter(|(n, _)| !nets.iter().any(|(o, _)| o != n && o.contains(n)))
            .copied()
            .collect()
    }

    /// The ports as nft/iptables text: `3333,14444-14450`.
    pub fn ports_text(&self, range_sep: &str) -> String {
        let v: Vec<String> = self
            .ports
            .iter()
            .map(|p| {
                if p.lo == p.hi {
                    p.lo.to_string()
                } else {
                    format!("{}{range_sep}{}", p.lo, p.hi)
                }
            })
            .collect();
        v.join(",")
    }
}

/// A change in words, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add(IpNet, Option<u32>),
    Remove(IpNet),
    Renew(IpNet, Option<u32>),
    /// The rules themselves (chains, jumps, port rules) change.
    Rules(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let life = |t: &Option<u32>| match t {
            Some(t) => format!("timeout {t}s"),
            None => "permanent".to_string(),
        };
        match self {
            Change::Add(n, t) => write!(f, "+ {n} ({})", life(t)),
            Change::Remove(n) => write!(f, "- {n}"),
            Change::Renew(n, t) => write!(f, "~ {n} ({})", life(t)),
            Change::Rules(s) => write!(f, "* {s}"),
        }
    }
}

/// An exact action a backend would run.
#[derive(Clone, Debug)]
pub enum Action {
    /// One nftables transaction, through the `nftables` crate's JSON API.
    Nft(nftables::schema::Nftables<'static>),
    /// A program with separate arguments (never a shell), and optional stdin.
    Run {
        program: String,
        args: Vec<String>,
        stdin: Option<String>,
    },
    /// A file written atomically.
    Write { path: PathBuf, contents: String },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Nft(n) => {
                let json = serde_json::to_string(n).expect("nft schema serialises");
                write!(f, "nft -j -f - <<'EOF'\n{json}\nEOF")
            }
            Action::Run {
                program,
                args,
                stdin,
            } => {
                write!(f, "{program}")?;
                for a in args {
                    write!(f, " {a}")?;
                }
                if let Some(s) = stdin {
                    write!(f, " <<'EOF'\n{s}EOF")?;
                }
                Ok(())
            }
            Action::Write { path, contents } => {
                write!(f, "write {} <<'EOF'\n{contents}EOF", path.display())
            }
        }
    }
}

/// The changes and the actions that make them.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.actions.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for a in &self.actions {
            writeln!(f, "{a}")?;
        }
        Ok(())
    }
}

/// A firewall backend.
pub trait Backend: Send {
    fn name(&self) -> &'static str;

    /// Reads what is installed and works out how to reach `desired`.
    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError>;

    /// Works out how to remove everything this backend created, and
    /// nothing else.
    fn plan_flush(&mut self) -> Result<Plan, BlockError>;

    /// Carries out a plan made by this backend.
    fn execute(&mut self, plan: &Plan) -> Result<(), BlockError> {
        plan.actions.iter().try_for_each(run_action)
    }
}

/// Compares what is installed (network → seconds left, `None` permanent)
/// with what is desired.
pub fn diff(
    installed: &BTreeMap<IpNet, Option<u32>>,
    desired: &BTreeMap<IpNet, DesiredEntry>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (net, d) in desired {
        match installed.get(net) {
            None => out.push(Change::Add(*net, d.timeout)),
            Some(have) => {
                let stale = match (have, d.timeout) {
                    (None, None) => false,
                    (None, Some(_)) | (Some(_), None) => true,
                    (Some(h), Some(w)) => u64::from(w) > u64::from(*h) + RENEW_SLACK_SECS,
                };
                if stale {
                    out.push(Change::Renew(*net, d.timeout));
                }
            }
        }
    }
    for net in installed.keys() {
        if !desired.contains_key(net) {
            out.push(Change::Remove(*net));
        }
    }
    out
}

/// Runs one action.
pub fn run_action(action: &Action) -> Result<(), BlockError> {
    match action {
        Action::Nft(n) => nftables::helper::apply_ruleset(n).map_err(|e| BlockError::Command {
            program: "nft".into(),
            message: nft_error(&e),
        }),
        Action::Run {
            program,
            args,
            stdin,
        } => run(program, args, stdin.as_deref()).map(|_| ()),
        Action::Write { path, contents } => super::write_atomic(path, contents.as_bytes()),
    }
}

/// Puts the tool's own stderr into the message: it says what was wrong.
pub fn nft_error(e: &nftables::helper::NftablesError) -> String {
    match e {
        nftables::helper::NftablesError::NftFailed { stderr, hint, .. } => {
            format!("{hint}: {}", stderr.trim())
        }
        other => other.to_string(),
    }
}

/// Runs a program with separate arguments and returns its stdout.
pub fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<String, BlockError> {
    let err = |message: String| BlockError::Command {
        program: program.to_string(),
        message,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| err(format!("cannot run: {e}")))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(text.as_bytes())
            .map_err(|e| err(format!("writing stdin: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint =
            if stderr.contains("Permission denied") || stderr.contains("Operation not permitted") {
                " (changing the firewall needs root or cap_net_admin)"
            } else {
                ""
            };
        return Err(err(format!(
            "{} failed: {}{hint}",
            args.join(" "),
            stderr.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wraps a backend so that plans are recorded (and printed by the caller)
/// instead of executed. Serves `--dry-run` and the tests.
pub struct DryRun {
    pub inner: Box<dyn Backend>,
    pub recorded: Vec<Plan>,
}

impl DryRun {
    pub fn new(inner: Box<dyn Backend>) -> DryRun {
        DryRun {
            inner,
            recorded: Vec::new(),
        }
    }
}

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        self.inner.plan(desired)
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        self.inner.plan_flush()
    }

    fn execute(&mut self, plan: &Plan) -> Result<(), BlockError> {
        self.recorded.push(plan.clone());
        Ok(())
    }
}

/// What a backend holds: network → seconds left (`None`: permanent), ports.
type Installed = (BTreeMap<IpNet, Option<u32>>, Vec<PortRange>);

/// A backend that keeps its "firewall" in memory: the model the real ones
/// are held to, used by unit tests of the blocker.
#[derive(Default)]
pub struct Memory {
    pub installed: BTreeMap<IpNet, Option<u32>>,
    pub ports: Vec<PortRange>,
    pending: Option<Installed>,
}

impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        let mut changes = diff(&self.installed, &desired.entries);
        if self.ports != desired.ports {
            changes.push(Change::Rules(format!("ports {}", desired.ports_text("-"))));
        }
        let next = desired
            .entries
            .iter()
            .map(|(n, d)| (*n, d.timeout))
            .collect();
        self.pending = Some((next, desired.ports.clone()));
        Ok(Plan {
            changes,
            actions: Vec::new(),
        })
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        let changes = self.installed.keys().map(|n| Change::Remove(*n)).collect();
        self.pending = Some((BTreeMap::new(), Vec::new()));
        Ok(Plan {
            changes,
            actions: Vec::new(),
        })
    }

    fn execute(&mut self, _plan: &Plan) -> Result<(), BlockError> {
        if let Some((installed, ports)) = self.pending.take() {
            self.installed = installed;
            self.ports = ports;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: Option<u32>) -> DesiredEntry {
        DesiredEntry {
            timeout: t,
            expires_at: t.map(u64::from),
        }
    }

    #[test]
    fn diff_adds_removes_and_renews_only_past_the_slack() {
        let a: IpNet = "192.0.2.1/32".parse().unwrap();
        let b: IpNet = "192.0.2.2/32".parse().unwrap();
        let c: IpNet = "192.0.2.3/32".parse().unwrap();
        let installed = BTreeMap::from([(a, Some(1000)), (b, Some(1000))]);
        let desired = BTreeMap::from([(a, entry(Some(1030))), (c, entry(None))]);
        assert_eq!(
            diff(&installed, &desired),
            vec![Change::Add(c, None), Change::Remove(b)]
        );
        let desired = BTreeMap::from([(a, entry(Some(5000))), (b, entry(Some(1000)))]);
        assert_eq!(
            diff(&installed, &desired),
            vec![Change::Renew(a, Some(5000))]
        );
        let same = BTreeMap::from([(a, entry(Some(1000))), (b, entry(Some(990)))]);
        assert!(diff(&installed, &same).is_empty());
    }

    #[test]
    fn networks_inside_other_networks_are_left_to_the_outer_one() {
        let mut d = Desired::default();
        for n in ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "192.0.2.5/32"] {
            d.entries.insert(n.parse().unwrap(), entry(None));
        }
        let nets: Vec<String> = d.networks().iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.0/24"]);
        assert_eq!(d.hosts().count(), 1);
    }
}
