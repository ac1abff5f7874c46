//! ipset backend: four sets of our own with per-element timeouts and a
//! `maxelem` equal to the cap (`stratumguard-ip4`/`-ip6` of type `hash:ip`,
//! `stratumguard-net4`/`-net6` of type `hash:net`), matched by a chain of our
//! own (`STRATUMGUARD-IPSET`) that iptables/ip6tables jump to from the top of
//! INPUT, OUTPUT and FORWARD.
//!
//! A set that must change is rebuilt beside the live one and swapped in
//! (`ipset restore` with create, add, swap, destroy), so the kernel goes
//! from the old contents to the new ones at once and a changed `maxelem`
//! takes effect too.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::backend::{diff, run, Action, Backend, Change, Desired, DesiredEntry, Plan};
use super::xtables::{self, Family};
use super::BlockError;

pub const CHAIN: &str = "STRATUMGUARD-IPSET";

/// ipset's own default; set sizes grow from it as needed.
const HASHSIZE: u32 = 1024;

struct SetSpec {
    name: &'static str,
    kind: &'static str,
    family: Family,
    hosts: bool,
}

const SETS: [SetSpec; 4] = [
    SetSpec {
        name: "stratumguard-ip4",
        kind: "hash:ip",
        family: Family::V4,
        hosts: true,
    },
    SetSpec {
        name: "stratumguard-net4",
        kind: "hash:net",
        family: Family::V4,
        hosts: false,
    },
    SetSpec {
        name: "stratumguard-ip6",
        kind: "hash:ip",
        family: Family::V6,
        hosts: true,
    },
    SetSpec {
        name: "stratumguard-net6",
        kind: "hash:net",
        family: Family::V6,
        hosts: false,
    },
];

pub struct Ipset;

/// A set as installed: its `maxelem` and elements with seconds left.
struct InstalledSet {
    maxelem: Option<usize>,
    elements: BTreeMap<IpNet, Option<u32>>,
}

fn read_set(name: &str) -> Result<Option<InstalledSet>, BlockError> {
    let out = match run("ipset", &["save".into(), name.into()], None) {
        Ok(o) => o,
        Err(BlockError::Command { message, .. }) if message.contains("does not exist") => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut set = InstalledSet {
        maxelem: None,
        elements: BTreeMap::new(),
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", _, rest @ ..] => {
                set.maxelem = rest
                    .windows(2)
                    .find(|w| w[0] == "maxelem")
                    .and_then(|w| w[1].parse().ok());
            }
            ["add", _, addr, rest @ ..] => {
                let Ok(net) = super::policy::parse_net(addr) else {
                    continue;
                };
                let left = rest
                    .windows(2)
                    .find(|w| w[0] == "timeout")
                    .and_then(|w| w[1].parse::<u32>().ok())
                    .filter(|t| *t > 0);
                set.elements.insert(net, left);
            }
            _ => {}
        }
    }
    Ok(Some(set))
}

fn family_arg(f: Family) -> &'static str {
    match f {
        Family::V4 => "inet",
        Family::V6 => "inet6",
    }
}

fn create_line(name: &str, spec: &SetSpec, max: usize) -> String {
    format!(
        "create {name} {} family {} hashsize {HASHSIZE} maxelem {max} timeout 0\n",
        spec.kind,
        family_arg(spec.family)
    )
}

fn add_line(name: &str, net: &IpNet, timeout: Option<u32>) -> String {
    // hash:ip takes a bare address; timeout 0 is permanent.
    let addr = if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    };
    format!("add {name} {addr} timeout {}\n", timeout.unwrap_or(0))
}

fn wanted(spec: &SetSpec, desired: &Desired) -> BTreeMap<IpNet, DesiredEntry> {
    let is_family = |n: &IpNet| n.addr().is_ipv4() == (spec.family == Family::V4);
    if spec.hosts {
        desired
            .hosts()
            .filter(|(n, _)| is_family(n))
            .map(|(n, e)| (*n, *e))
            .collect()
    } else {
        desired
            .networks()
            .into_iter()
            .filter(|(n, _)| is_family(n))
            .collect()
    }
}

fn chain_rules(family: Family, desired: &Desired) -> Vec<String> {
    let mut out = Vec::new();
    for spec in SETS.iter().filter(|s| s.family == family) {
        for dir in ["src", "dst"] {
            out.push(format!(
                "-A {CHAIN} -m set --match-set {} {dir} -j DROP",
                spec.name
            ));
        }
    }
    out.extend(xtables::port_rules(CHAIN, &desired.ports, "--dports"));
    out.extend(xtables::port_rules(CHAIN, &desired.ports, "--sports"));
    out
}

impl Backend for Ipset {
    fn name(&self) -> &'static str {
        "ipset"
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        let mut plan = Plan::default();

        // The sets first: the chain's rules refer to them.
        let mut restore = String::new();
        for spec in &SETS {
            let want = wanted(spec, desired);
            let have = read_set(spec.name)?;
            let changes = diff(
                have.as_ref().map_or(&BTreeMap::new(), |h| &h.elements),
                &want,
            );
            let resize = have
                .as_ref()
                .is_some_and(|h| h.maxelem != Some(desired.max));
            if have.is_some() && changes.is_empty() && !resize {
                continue;
            }
            if resize {
                plan.changes.push(Change::Rules(format!(
                    "{} maxelem {}",
                    spec.name, desired.max
                )));
            }
            plan.changes.extend(changes);
            if have.is_none() {
                restore.push_str(&create_line(spec.name, spec, desired.max));
                for (net, e) in &want {
                    restore.push_str(&add_line(spec.name, net, e.timeout));
                }
            } else {
                let tmp = format!("{}-new", spec.name);
                restore.push_str(&create_line(&tmp, spec, desired.max));
                restore.push_str(&format!("flush {tmp}\n"));
                for (net, e) in &want {
                    restore.push_str(&add_line(&tmp, net, e.timeout));
                }
                restore.push_str(&format!("swap {tmp} {}\ndestroy {tmp}\n", spec.name));
            }
        }
        if !restore.is_empty() {
            plan.actions.push(Action::Run {
                program: "ipset".into(),
                args: vec!["-exist".into(), "restore".into()],
                stdin: Some(restore),
            });
        }

        for family in [Family::V4, Family::V6] {
            let have = xtables::read_chain(family, CHAIN)?;
            if let Some((c, a)) =
                xtables::plan_chain(family, CHAIN, &chain_rules(family, desired), &have)
            {
                plan.changes.push(c);
                plan.actions.push(a);
            }
        }
        Ok(plan)
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        let mut plan = Plan::default();

        // Rules first: a set cannot be destroyed while a rule refers to it.
        for family in [Family::V4, Family::V6] {
            let have = xtables::read_chain(family, CHAIN)?;
            if let Some((c, a)) = xtables::plan_remove_chain(family, CHAIN, &have) {
                plan.changes.push(c);
                plan.actions.push(a);
            }
        }
        for spec in &SETS {
            if let Some(have) = read_set(spec.name)? {
                plan.changes
                    .extend(have.elements.keys().map(|n| Change::Remove(*n)));
                plan.changes
                    .push(Change::Rules(format!("destroy set {}", spec.name)));
                plan.actions.push(Action::Run {
                    program: "ipset".into(),
                    args: vec!["destroy".into(), spec.name.into()],
                    stdin: None,
                });
            }
        }
        Ok(plan)
    }
}
