//! Shared plumbing for the iptables-based backends (`ipset`, `iptables`): a
//! chain of our own, jumped to from the top of INPUT, OUTPUT and FORWARD,
//! whose contents are replaced in one `iptables-restore --noflush` run.
//!
//! `--noflush` leaves every other chain alone; declaring our chain in the
//! restore text empties it, and the new rules and the jumps are committed
//! together, which is atomic in both the legacy and the nf_tables variant.

use std::sync::OnceLock;

use super::backend::{run, Action, Change};
use super::BlockError;

pub const HOOKS: [&str; 3] = ["INPUT", "OUTPUT", "FORWARD"];

/// IPv4 or IPv6: iptables or ip6tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The iptables variant that works on this kernel: the default `iptables`
/// first, then the nf_tables and legacy ones by name. Chosen once per run.
pub fn program(family: Family) -> &'static str {
    static V4: OnceLock<&'static str> = OnceLock::new();
    static V6: OnceLock<&'static str> = OnceLock::new();
    let (cell, names): (_, [&'static str; 3]) = match family {
        Family::V4 => (&V4, ["iptables", "iptables-nft", "iptables-legacy"]),
        Family::V6 => (&V6, ["ip6tables", "ip6tables-nft", "ip6tables-legacy"]),
    };
    cell.get_or_init(|| {
        for n in names {
            if run(n, &["-w".into(), "-S".into(), "INPUT".into()], None).is_ok() {
                tracing::debug!(program = n, "iptables variant that works here");
                return n;
            }
        }
        names[0]
    })
}

fn restore_program(family: Family) -> String {
    format!("{}-restore", program(family))
}

/// Our chain as installed: its rules in `-S` form, or `None` if absent,
/// and for each hook how many jumps to it there are and whether the first
/// rule is one.
pub struct ChainState {
    pub rules: Option<Vec<String>>,
    pub jumps: Vec<(&'static str, usize, bool)>,
}

pub fn read_chain(family: Family, chain: &str) -> Result<ChainState, BlockError> {
    let prog = program(family);
    let rules = run(prog, &["-w".into(), "-S".into(), chain.into()], None)
        .ok()
        .map(|out| {
            out.lines()
                .filter(|l| l.starts_with("-A "))
                .map(str::to_string)
                .collect()
        });
    let jump = format!("-j {chain}");
    let mut jumps = Vec::new();
    for hook in HOOKS {
        let out = run(prog, &["-w".into(), "-S".into(), hook.into()], None)?;
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("-A ")).collect();
        let ours = format!("-A {hook} {jump}");
        let count = lines.iter().filter(|l| **l == ours).count();
        let first = lines.first().is_some_and(|l| *l == ours);
        jumps.push((hook, count, first));
    }
    Ok(ChainState { rules, jumps })
}

/// Works out the restore run that makes `chain` hold `want` (rules in `-S`
/// form) with one jump to it at the top of each hook. Returns nothing when
/// that is already so.
pub fn plan_chain(
    family: Family,
    chain: &str,
    want: &[String],
    have: &ChainState,
) -> Option<(Change, Action)> {
    let jumps_ok = have.jumps.iter().all(|(_, n, first)| *n == 1 && *first);
    if have.rules.as_deref() == Some(want) && jumps_ok {
        return None;
    }
    let mut text = format!("*filter\n:{chain} - [0:0]\n");
    for r in want {
        text.push_str(r);
        text.push('\n');
    }
    if !jumps_ok {
        // Remove every jump, then put exactly one back at the top.
        for (hook, n, _) in &have.jumps {
            for _ in 0..*n {
                text.push_str(&format!("-D {hook} -j {chain}\n"));
            }
        }
        for hook in HOOKS {
            text.push_str(&format!("-I {hook} 1 -j {chain}\n"));
        }
    }
    text.push_str("COMMIT\n");
    let change = Change::Rules(format!(
        "{} chain {chain}: {} rules{}",
        family.label(),
        want.len(),
        if jumps_ok {
            ""
        } else {
            ", jumps from INPUT/OUTPUT/FORWARD at position 1"
        }
    ));
    Some((change, restore_action(family, text)))
}

/// The restore run that removes our chain and the jumps to it.
pub fn plan_remove_chain(
    family: Family,
    chain: &str,
    have: &ChainState,
) -> Option<(Change, Action)> {
    let jumps: usize = have.jumps.iter().map(|(_, n, _)| n).sum();
    if have.rules.is_none() && jumps == 0 {
        return None;
    }
    let mut text = String::from("*filter\n");
    for (hook, n, _) in &have.jumps {
        for _ in 0..*n {
            text.push_str(&format!("-D {hook} -j {chain}\n"));
        }
    }
    if have.rules.is_some() {
        text.push_str(&format!("-F {chain}\n-X {chain}\n"));
    }
    text.push_str("COMMIT\n");
    let change = Change::Rules(format!(
        "{} delete chain {chain} and its jumps",
        family.label()
    ));
    Some((change, restore_action(family, text)))
}

fn restore_action(family: Family, text: String) -> Action {
    Action::Run {
        program: restore_program(family),
        args: vec!["-w".into(), "--noflush".into()],
        stdin: Some(text),
    }
}

/// `-p tcp -m multiport` rules for the blocked ports. multiport takes at
/// most 15 ports per rule, a range counting as two, so the list is split.
pub fn port_rules(chain: &str, ports: &[super::state::PortRange], flag: &str) -> Vec<String> {
    /// The kernel's XT_MULTI_PORTS.
    const MULTIPORT_MAX: usize = 15;
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut used = 0;
    for p in ports {
        let (text, cost) = if p.lo == p.hi {
            (p.lo.to_string(), 1)
        } else {
            (format!("{}:{}", p.lo, p.hi), 2)
        };
        if used + cost > MULTIPORT_MAX {
            out.push(format!(
                "-A {chain} -p tcp -m multiport {flag} {} -j DROP",
                cur.join(",")
            ));
            cur.clear();
            used = 0;
        }
        cur.push(text);
        used += cost;
    }
    if !cur.is_empty() {
        out.push(format!(
            "-A {chain} -p tcp -m multiport {flag} {} -j DROP",
            cur.join(",")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_port_lists_are_split_into_multiport_rules_of_fifteen() {
        let ports: Vec<_> = (1..=20u16)
            .map(|p| super::super::state::PortRange { lo: p, hi: p })
            .collect();
        let r = port_rules("C", &ports, "--dports");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[1],
            "-A C -p tcp -m multiport --dports 16,17,18,19,20 -j DROP"
        );
    }

    #[test]
    fn a_chain_already_in_place_needs_no_change() {
        let want = vec!["-A C -d 192.0.2.1/32 -j DROP".to_string()];
        let have = ChainState {
            rules: Some(want.clone()),
            jumps: HOOKS.iter().map(|h| (*h, 1, true)).collect(),
        };
        assert!(plan_chain(Family::V4, "C", &want, &have).is_none());
        // A jump pushed down by someone else's insert is moved back up.
        let pushed = ChainState {
            jumps: vec![
                ("INPUT", 1, false),
                ("OUTPUT", 1, true),
                ("FORWARD", 1, true),
            ],
            ..have
        };
        let (_, action) = plan_chain(Family::V4, "C", &want, &pushed).unwrap();
        let Action::Run {
            stdin: Some(text), ..
        } = action
        else {
            panic!()
        };
        assert!(
            text.contains("-D INPUT -j C\n") && text.contains("-I INPUT 1 -j C\n"),
            "{text}"
        );
    }
}
