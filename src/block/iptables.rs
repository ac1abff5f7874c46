//! iptables backend, for hosts without ipset or nftables: a chain of our own
//! (`STRATUMGUARD`, in iptables for IPv4 and ip6tables for IPv6) jumped to
//! from the top of INPUT, OUTPUT and FORWARD, with one pair of rules per
//! entry (`-s ADDR -j DROP`, `-d ADDR -j DROP`).
//!
//! iptables has no timeouts: an expired entry leaves the chain at the next
//! apply, which `monitor` does as it runs and `block apply` does when run
//! (from a timer, for hosts that only use `analyze`).
//!
//! Known shortcoming: one rule per address is a linear scan per packet;
//! past a few thousand entries use the ipset or nftables backend, whose sets
//! are hashed.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::backend::{Backend, Change, Desired, Plan};
use super::xtables::{self, Family};
use super::BlockError;

pub const CHAIN: &str = "STRATUMGUARD";

pub struct Iptables;

fn rules(family: Family, desired: &Desired) -> Vec<String> {
    let mut out = Vec::new();
    let mut nets: Vec<IpNet> = desired.hosts().map(|(n, _)| *n).collect();
    nets.extend(desired.networks().into_iter().map(|(n, _)| n));
    nets.sort();
    for net in nets
        .iter()
        .filter(|n| n.addr().is_ipv4() == (family == Family::V4))
    {
        out.push(format!("-A {CHAIN} -s {net} -j DROP"));
        out.push(format!("-A {CHAIN} -d {net} -j DROP"));
    }
    out.extend(xtables::port_rules(CHAIN, &desired.ports, "--dports"));
    out.extend(xtables::port_rules(CHAIN, &desired.ports, "--sports"));
    out
}

/// The addresses the installed chain blocks, read back from its rules.
fn installed(rules: &[String]) -> BTreeMap<IpNet, Option<u32>> {
    rules
        .iter()
        .filter_map(|r| {
            let mut w = r.split_whitespace();
            w.find(|x| *x == "-d")?;
            w.next()?.parse::<IpNet>().ok()
        })
        .map(|n| (n, None))
        .collect()
}

impl Backend for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        let mut plan = Plan::default();
        for family in [Family::V4, Family::V6] {
            let have = xtables::read_chain(family, CHAIN)?;
            let want = rules(family, desired);
            if let Some((c, a)) = xtables::plan_chain(family, CHAIN, &want, &have) {
                // The entry-level changes, in words, beside the chain rewrite.
                let before = installed(have.rules.as_deref().unwrap_or(&[]));
                let after = installed(&want);
                for n in after.keys().filter(|n| !before.contains_key(n)) {
                    plan.changes.push(Change::Add(*n, None));
                }
                for n in before.keys().filter(|n| !after.contains_key(n)) {
                    plan.changes.push(Change::Remove(*n));
                }
                plan.changes.push(c);
                plan.actions.push(a);
            }
        }
        Ok(plan)
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        let mut plan = Plan::default();
        for family in [Family::V4, Family::V6] {
            let have = xtables::read_chain(family, CHAIN)?;
            for n in installed(have.rules.as_deref().unwrap_or(&[])).keys() {
                plan.changes.push(Change::Remove(*n));
            }
            if let Some((c, a)) = xtables::plan_remove_chain(family, CHAIN, &have) {
                plan.changes.push(c);
                plan.actions.push(a);
            }
        }
        Ok(plan)
    }
}
