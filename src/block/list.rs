//! List backend: a plain blocklist for other tools (pfSense/OPNsense URL
//! table aliases, Suricata IP reputation, routers): one address or CIDR per
//! line, aggregated into the fewest networks that cover the same addresses,
//! and beside it `FILE.json` with every entry, its expiry and the ports.
//!
//! The files hold no timeouts of their own: an expired entry leaves them at
//! the next write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::backend::{Action, Backend, Change, Desired, Plan};
use super::state::PortRange;
use super::BlockError;

pub struct List {
    pub path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct JsonList {
    entries: Vec<JsonEntry>,
    ports: Vec<PortRange>,
}

#[derive(Serialize, Deserialize)]
struct JsonEntry {
    net: IpNet,
    /// Unix seconds; `null`: permanent.
    expires: Option<u64>,
}

fn json_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

/// The plain form: aggregated, hosts written as bare addresses.
pub fn plain(desired: &Desired) -> String {
    let nets: Vec<IpNet> = desired.entries.keys().copied().collect();
    let mut out = String::new();
    for n in IpNet::aggregate(&nets) {
        if n.prefix_len() == n.max_prefix_len() {
            out.push_str(&n.addr().to_string());
        } else {
            out.push_str(&n.to_string());
        }
        out.push('\n');
    }
    out
}

fn json(desired: &Desired) -> String {
    let list = JsonList {
        entries: desired
            .entries
            .iter()
            .map(|(n, e)| JsonEntry {
                net: *n,
                expires: e.expires_at,
            })
            .collect(),
        ports: desired.ports.clone(),
    };
    let mut s = serde_json::to_string_pretty(&list).expect("list serialises");
    s.push('\n');
    s
}

impl Backend for List {
    fn name(&self) -> &'static str {
        "list"
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        let jpath = json_path(&self.path);
        let text = plain(desired);
        let jtext = json(desired);
        let old_text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let old_json = std::fs::read_to_string(&jpath).unwrap_or_default();
        if old_text == text && old_json == jtext {
            return Ok(Plan::default());
        }
        let before: BTreeMap<IpNet, Option<u64>> = serde_json::from_str::<JsonList>(&old_json)
            .map(|l| l.entries.into_iter().map(|e| (e.net, e.expires)).collect())
            .unwrap_or_default();
        let mut changes = Vec::new();
        for (n, e) in &desired.entries {
            match before.get(n) {
                None => changes.push(Change::Add(*n, e.timeout)),
                Some(x) if *x != e.expires_at => changes.push(Change::Renew(*n, e.timeout)),
                Some(_) => {}
            }
        }
        changes.extend(
            before
                .keys()
                .filter(|n| !desired.entries.contains_key(n))
                .map(|n| Change::Remove(*n)),
        );
        Ok(Plan {
            changes,
            actions: vec![
                Action::Write {
                    path: self.path.clone(),
                    contents: text,
                },
                Action::Write {
                    path: jpath,
                    contents: jtext,
                },
            ],
        })
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        self.plan(&Desired::default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::DesiredEntry;
    use super::*;

    #[test]
    fn the_plain_list_aggregates_adjacent_addresses() {
        let mut d = Desired::default();
        for n in [
            "192.0.2.0/32",
            "192.0.2.1/32",
            "192.0.2.2/32",
            "2001:db8::1/128",
        ] {
            d.entries.insert(
                n.parse().unwrap(),
                DesiredEntry {
                    timeout: None,
                    expires_at: None,
                },
            );
        }
        assert_eq!(plain(&d), "192.0.2.0/31\n192.0.2.2\n2001:db8::1\n");
    }

    #[test]
    fn writing_the_same_list_twice_changes_nothing_and_flush_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocklist.txt");
        let mut l = List { path: path.clone() };
        let mut d = Desired::default();
        d.entries.insert(
            "192.0.2.9/32".parse().unwrap(),
            DesiredEntry {
                timeout: Some(5),
                expires_at: Some(99),
            },
        );
        let plan = l.plan(&d).unwrap();
        assert_eq!(
            plan.changes,
            vec![Change::Add("192.0.2.9/32".parse().unwrap(), Some(5))]
        );
        l.execute(&plan).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "192.0.2.9\n");
        assert!(std::fs::read_to_string(json_path(&path))
            .unwrap()
            .contains("\"expires\": 99"));
        assert!(l.plan(&d).unwrap().is_empty());
        let flush = l.plan_flush().unwrap();
        assert_eq!(
            flush.changes,
            vec![Change::Remove("192.0.2.9/32".parse().unwrap())]
        );
        l.execute(&flush).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
