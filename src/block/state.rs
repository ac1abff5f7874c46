//! The blocklist state: which addresses and networks are blocked, why, and
//! until when. It lives in a JSON file so that a restart re-applies exactly
//! what was blocked before.
//!
//! The file is written atomically (a temporary file in the same directory,
//! fsync, rename over the old file, fsync of the directory), so a process
//! killed mid-write leaves either the old file or the new one, never a mix.
//!
//! Times are Unix seconds on the wall clock: firewall timeouts run on the
//! wall clock, whatever the clock of the capture that produced a detection.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::BlockError;

/// The state file format this code writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Default lifetime of an entry: a day, long enough that a miner that
/// reconnects daily stays blocked, short enough that an address that was
/// reassigned to someone else is released on its own.
pub const DEFAULT_TTL_SECS: u64 = 24 * 60 * 60;

/// Default cap on entries per backend. 65 536 is ipset's default `maxelem`
/// and keeps an nftables set well under a megabyte of kernel memory; a flood
/// of fake pools beyond it evicts the least recently seen entries.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// Largest state file accepted. At the default cap an entry is ~300 bytes
/// pretty-printed, so 64 MiB leaves room for a cap several times larger while
/// keeping a corrupt or hostile file from exhausting memory.
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an entry is in the blocklist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A pool found in traffic.
    Detected,
    /// Added by hand with `block add`.
    Manual,
    /// Given on the command line with `--block-cidr`.
    Operator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Detected => "detected",
            Source::Manual => "manual",
            Source::Operator => "operator",
        }
    }
}

/// One blocked address (a /32 or /128) or network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub net: IpNet,
    pub source: Source,
    /// For detected pools: the dialect spoken, the confidence and the
    /// endpoint that was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<SocketAddr>,
    pub added: u64,
    /// Last time the pool was seen again (or the entry re-added).
    pub renewed: u64,
    /// `None`: permanent.
    pub expires: Option<u64>,
}

impl Entry {
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// A TCP port or an inclusive range of them, blocked outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("invalid port {p:?}: expected 1-65535")),
                Ok(n) => Ok(n),
            }
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if lo > hi {
            return Err(format!("invalid port range {s:?}: start after end"));
        }
        Ok(PortRange { lo, hi })
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortRange, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `3333,5555,14444-14450`.
pub fn parse_port_list(s: &str) -> Result<Vec<PortRange>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// The file form: entries as a list so the file reads top to bottom.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile<'a> {
    version: u32,
    /// The backend the entries were applied with (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default)]
    dropped_over_cap: u64,
    #[serde(default)]
    ports: BTreeSet<PortRange>,
    #[serde(default)]
    entries: Vec<Cow<'a, Entry>>,
}

/// What happened to a detected pool offered to the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A new entry; `evicted` names the entry dropped to make room, if any.
    Added { evicted: Option<IpNet> },
    /// Already there; its lifetime was extended.
    Renewed,
    /// The cap was reached and nothing could be evicted (all entries are
    /// manual or operator entries): the new entry was refused.
    Refused,
}

/// Entries keyed by network, plus an index of detected entries by when they
/// were last seen, so that eviction at the cap is a log-time operation even
/// under a flood.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// The backend these entries are applied with: one state file serves one
    /// backend, so that `flush` or `list` with another backend cannot act on
    /// entries that live in a different firewall.
    pub backend: Option<String>,
    entries: BTreeMap<IpNet, Entry>,
    by_renewed: BTreeSet<(u64, IpNet)>,
    pub ports: BTreeSet<PortRange>,
    /// Detected entries dropped (evicted or refused) because of the cap.
    pub dropped_over_cap: u64,
}

impl State {
    /// Loads the state; a missing file is an empty state. A file that does
    /// not parse is an error naming the line and column, and nothing else is
    /// touched, so the firewall keeps enforcing what was applied last.
    pub fn load(path: &Path) -> Result<State, BlockError> {
        let text = match read_capped(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => {
                return Err(BlockError::Io {
                    path: path.to_path_buf(),
                    error: e,
                })
            }
        };
        State::parse(&text, path)
    }

    /// Parses the text of a state file; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<State, BlockError> {
        let file: StateFile = serde_json::from_str(text).map_err(|e| super::malformed(path, &e))?;
        if file.version != STATE_VERSION {
            return Err(BlockError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "state version {} is not supported (expected {STATE_VERSION})",
                    file.version
                ),
            });
        }
        let mut state = State {
            backend: file.backend,
            ports: file.ports,
            dropped_over_cap: file.dropped_over_cap,
            ..State::default()
        };
        for (i, e) in file.entries.into_iter().enumerate() {
            let mut e = e.into_owned();
            e.net = e.net.trunc();
            if state.entries.contains_key(&e.net) {
                return Err(BlockError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("entry {} repeats {}", i + 1, e.net),
                });
            }
            state.insert(e);
        }
        Ok(state)
    }

    /// Writes the state atomically: temporary file, fsync, rename, fsync of
    /// the directory.
    ///
    /// Known shortcoming: a process killed between creating and renaming the
    /// temporary file leaves that file behind (`.NAME.PID.tmp`). It is never
    /// read; removing stale ones would need a lock to tell them from a
    /// concurrent writer's file, and two writers racing (a running monitor
    /// and a `block add`) is itself not arbitrated yet: the last to write wins.
    pub fn save(&self, path: &Path) -> Result<(), BlockError> {
        super::write_atomic_with(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &self.file_form())?;
            w.write_all(b"\n")
        })
    }

    fn file_form(&self) -> StateFile<'_> {
        StateFile {
            version: STATE_VERSION,
            backend: self.backend.clone(),
            dropped_over_cap: self.dropped_over_cap,
            ports: self.ports.clone(),
            entries: self.entries.values().map(Cow::Borrowed).collect(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.file_form()).expect("state serialises")
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, net: &IpNet) -> Option<&Entry> {
        self.entries.get(&net.trunc())
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    fn insert(&mut self, e: Entry) {
        if e.source == Source::Detected {
            self.by_renewed.insert((e.renewed, e.net));
        }
        if let Some(old) = self.entries.insert(e.net, e) {
            self.by_renewed.remove(&(old.renewed, old.net));
        }
    }

    pub fn remove(&mut self, net: &IpNet) -> Option<Entry> {
        let e = self.entries.remove(&net.trunc())?;
        self.by_renewed.remove(&(e.renewed, e.net));
        Some(e)
    }

    /// Drops expired entries and returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Entry> {
        let gone: Vec<IpNet> = self
            .entries
            .values()
            .filter(|e| e.is_expired(now))
            .map(|e| e.net)
            .collect();
        gone.iter().filter_map(|n| self.remove(n)).collect()
    }

    /// Makes room for one more entry under `max`: evicts the least recently
    /// seen detected entry. Returns `Err(())` when nothing can be evicted.
    fn make_room(&mut self, max: usize) -> Result<Option<IpNet>, ()> {
        if self.entries.len() < max {
            return Ok(None);
        }
        let Some(&(_, oldest)) = self.by_renewed.iter().next() else {
            return Err(());
        };
        self.remove(&oldest);
        self.dropped_over_cap += 1;
        Ok(Some(oldest))
    }

    /// Evicts least recently seen detected entries until at most `max`
    /// remain (a lowered `--block-max`, or a hand-edited file). Returns how
    /// many went; they are counted in `dropped_over_cap`.
    pub fn enforce_cap(&mut self, max: usize) -> usize {
        let mut n = 0;
        while self.entries.len() > max {
            let Some(&(_, oldest)) = self.by_renewed.iter().next() else {
                break;
            };
            self.remove(&oldest);
            self.dropped_over_cap += 1;
            n += 1;
        }
        n
    }

    /// Adds or renews a detected pool. `template` carries the why; its
    /// times are set here from `now` and `ttl` (`None`: permanent).
    pub fn upsert_detected(
        &mut self,
        template: Entry,
        now: u64,
        ttl: Option<u64>,
        max: usize,
    ) -> Upsert {
        let net = template.net.trunc();
        let expires = ttl.map(|t| now.saturating_add(t));
        if let Some(old) = self.entries.get(&net).cloned() {
            let mut e = old;
            e.renewed = now;
            // A manual or permanent entry keeps its own, longer, lifetime.
            e.expires = match (e.expires, expires) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
            if e.source == Source::Detected {
                e.dialect = template.dialect;
                e.confidence = template.confidence;
                e.pool = template.pool;
            }
            self.insert(e);
            return Upsert::Renewed;
        }
        let evicted = match self.make_room(max) {
            Ok(ev) => ev,
            Err(()) => {
                self.dropped_over_cap += 1;
                return Upsert::Refused;
            }
        };
        self.insert(Entry {
            net,
            added: now,
            renewed: now,
            expires,
            ..template
        });
        Upsert::Added { evicted }
    }

    /// Adds (or replaces) an entry by hand or from the command line. Manual
    /// entries are never evicted by the cap; they can still push out a
    /// detected entry. Fails when the cap is filled with manual entries.
    pub fn add_manual(
        &mut self,
        net: IpNet,
        source: Source,
        now: u64,
        ttl: Option<u64>,
        max: usize,
    ) -> Result<Option<IpNet>, BlockError> {
        let net = net.trunc();
        let evicted = if self.entries.contains_key(&net) {
            None
        } else {
            self.make_room(max).map_err(|()| BlockError::Full { max })?
        };
        self.insert(Entry {
            net,
            source,
            dialect: None,
            confidence: None,
            pool: None,
            added: self.entries.get(&net).map_or(now, |e| e.added),
            renewed: now,
            expires: ttl.map(|t| now.saturating_add(t)),
        });
        Ok(evicted)
    }
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = fs::File::open(path)?;
    let mut text = String::new();
    f.take(MAX_STATE_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_STATE_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(net: &str) -> Entry {
        Entry {
            net: net.parse().unwrap(),
            source: Source::Detected,
            dialect: Some("stratum-v1".into()),
            confidence: Some("confirmed".into()),
            pool: None,
            added: 0,
            renewed: 0,
            expires: None,
        }
    }

    #[test]
    fn a_new_pool_gets_the_ttl_and_a_resighting_extends_it() {
        let mut s = State::default();
        let up = s.upsert_detected(detected("192.0.2.1/32"), 100, Some(50), 10);
        assert_eq!(up, Upsert::Added { evicted: None });
        assert_eq!(
            s.get(&"192.0.2.1/32".parse().unwrap()).unwrap().expires,
            Some(150)
        );

        assert_eq!(
            s.upsert_detected(detected("192.0.2.1/32"), 130, Some(50), 10),
            Upsert::Renewed
        );
        let e = s.get(&"192.0.2.1/32".parse().unwrap()).unwrap();
        assert_eq!((e.added, e.renewed, e.expires), (100, 130, Some(180)));
    }

    #[test]
    fn ttl_zero_means_permanent_and_expiry_removes_only_timed_entries() {
        let mut s = State::default();
        s.upsert_detected(detected("192.0.2.1/32"), 100, Some(10), 10);
        s.upsert_detected(detected("192.0.2.2/32"), 100, None, 10);
        let gone = s.expire(110);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].net, "192.0.2.1/32".parse::<IpNet>().unwrap());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_cap_evicts_the_least_recently_seen_detected_entry_and_counts_it() {
        let mut s = State::default();
        s.upsert_detected(detected("192.0.2.1/32"), 1, None, 2);
        s.upsert_detected(detected("192.0.2.2/32"), 2, None, 2);
        // Seeing .1 again makes .2 the least recently seen.
        s.upsert_detected(detected("192.0.2.1/32"), 3, None, 2);
        let up = s.upsert_detected(detected("192.0.2.3/32"), 4, None, 2);
        assert_eq!(
            up,
            Upsert::Added {
                evicted: Some("192.0.2.2/32".parse().unwrap())
            }
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.dropped_over_cap, 1);
    }

    #[test]
    fn a_flood_past_the_cap_keeps_the_cap_and_never_evicts_manual_entries() {
        let mut s = State::default();
        s.add_manual(
            "198.51.100.0/24".parse().unwrap(),
            Source::Manual,
            0,
            None,
            100,
        )
        .unwrap();
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            s.upsert_detected(detected(&format!("{ip}/32")), u64::from(i), None, 100);
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.dropped_over_cap, 10_000 - 99);
        assert!(s.get(&"198.51.100.0/24".parse().unwrap()).is_some());
        // The survivors are the most recently seen.
        assert!(s.get(&"10.0.39.15/32".parse().unwrap()).is_some());
        assert!(s.get(&"10.0.0.0/32".parse().unwrap()).is_none());
    }

    #[test]
    fn a_lowered_cap_evicts_the_least_recently_seen_entries() {
        let mut s = State::default();
        for i in 0..10u64 {
            s.upsert_detected(detected(&format!("192.0.2.{i}/32")), i, None, 100);
        }
        assert_eq!(s.enforce_cap(4), 6);
        assert_eq!(s.len(), 4);
        assert!(s.get(&"192.0.2.9/32".parse().unwrap()).is_some());
        assert!(s.get(&"192.0.2.5/32".parse().unwrap()).is_none());
    }

    #[test]
    fn a_cap_full_of_manual_entries_refuses_detected_ones() {
        let mut s = State::default();
        s.add_manual(
            "198.51.100.1/32".parse().unwrap(),
            Source::Manual,
            0,
            None,
            1,
        )
        .unwrap();
        assert_eq!(
            s.upsert_detected(detected("192.0.2.1/32"), 1, None, 1),
            Upsert::Refused
        );
        assert_eq!(s.dropped_over_cap, 1);
        let err = s.add_manual(
            "198.51.100.2/32".parse().unwrap(),
            Source::Manual,
            0,
            None,
            1,
        );
        assert!(matches!(err, Err(BlockError::Full { max: 1 })));
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = State::default();
        s.upsert_detected(detected("2001:db8::1/128"), 5, Some(60), 10);
        s.add_manual(
            "192.0.2.0/24".parse().unwrap(),
            Source::Operator,
            5,
            None,
            10,
        )
        .unwrap();
        s.ports.insert("14444-14450".parse().unwrap());
        s.save(&path).unwrap();
        let back = State::load(&path).unwrap();
        assert_eq!(back.to_json(), s.to_json());
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn a_missing_state_file_is_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::load(&dir.path().join("none.json"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_malformed_state_file_names_the_line_and_column() {
        let text =
            "{\n  \"version\": 1,\n  \"entries\": [\n    {\"net\": \"192.0.2.1/32\",,}\n  ]\n}";
        let err = State::parse(text, Path::new("/x/state.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/state.json"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(matches!(err, BlockError::Malformed { line: 4, .. }));
    }

    #[test]
    fn a_state_entry_with_a_bad_address_is_rejected_with_its_line() {
        let text = "{\n  \"version\": 1,\n  \"entries\": [\n    {\"net\": \"300.0.2.1/32\", \
                    \"source\": \"manual\", \"added\": 0, \"renewed\": 0, \"expires\": null}\n  ]\n}";
        let err = State::parse(text, Path::new("s.json")).unwrap_err();
        assert!(
            matches!(err, BlockError::Malformed { line: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn port_lists_accept_numbers_and_ranges_and_reject_nonsense() {
        let v = parse_port_list("3333,5555,14444-14450").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[2],
            PortRange {
                lo: 14444,
                hi: 14450
            }
        );
        assert!(parse_port_list("0").is_err());
        assert!(parse_port_list("70000").is_err());
        assert!(parse_port_list("20-10").is_err());
        assert!(parse_port_list("x").is_err());
    }
}
