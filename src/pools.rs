//! The registry of pool endpoints: what the user reads and what the blocker acts on.
//!
//! One record per (server endpoint, dialect). The same `IP:port` may carry two
//! dialects (a pool that serves Stratum and HTTP getwork on one port), and the
//! evidence for each is kept apart so that one cannot vouch for the other.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::time::Timestamp;

/// How sure we are that an endpoint is a mining pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Only the client's side was seen: a mining request with no answer in the
    /// protocol. Anyone can send such a request to any address.
    Suspected,
    /// The server answered in the protocol, or pushed work on its own.
    Confirmed,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Suspected => "suspected",
            Confidence::Confirmed => "confirmed",
        }
    }
}

/// Caps on one record, so a pool with a million clients stays one small record.
pub const MAX_CLIENTS_PER_POOL: usize = 64;
pub const MAX_METHODS_PER_POOL: usize = 32;
/// Caps the registry itself; a flood of fake pools is counted, not stored.
pub const DEFAULT_MAX_POOLS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub server: SocketAddr,
    pub dialect: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolRecord {
    pub server: SocketAddr,
    pub dialect: String,
    pub confidence: Confidence,
    pub methods: BTreeSet<String>,
    pub agent: Option<String>,
    pub login: Option<String>,
    pub algo: Option<String>,
    pub clients: BTreeSet<IpAddr>,
    /// Clients beyond [`MAX_CLIENTS_PER_POOL`]: counted, not listed.
    pub clients_dropped: u64,
    pub flows: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

impl PoolRecord {
    /// A record of a pool first seen at `ts`, with nothing learnt yet.
    fn new(server: SocketAddr, dialect: &str, confidence: Confidence, ts: Timestamp) -> PoolRecord {
        PoolRecord {
            server,
            dialect: dialect.to_string(),
            confidence,
            methods: BTreeSet::new(),
            agent: None,
            login: None,
            algo: None,
            clients: BTreeSet::new(),
            clients_dropped: 0,
            flows: 0,
            first_seen: ts,
            last_seen: ts,
        }
    }

    /// A record with only an address and a confidence, for tests elsewhere.
    #[cfg(test)]
    pub(crate) fn for_test(server: &str, confidence: Confidence) -> PoolRecord {
        let server = server.parse().expect("test address");
        PoolRecord {
            flows: 1,
            ..PoolRecord::new(server, "stratum-v1", confidence, Timestamp(0))
        }
    }
}

/// What one flow contributed; merged into the record of its pool.
#[derive(Clone, Debug, Default)]
pub struct Sighting {
    pub methods: Vec<String>,
    pub agent: Option<String>,
    pub login: Option<String>,
    pub algo: Option<String>,
}

/// A change worth telling the user about as it happens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolEventKind {
    /// First sighting of this pool.
    New,
    /// A pool first seen as suspected has now been confirmed.
    Confirmed,
    /// The miner's agent, login or algorithm became known after the pool was
    /// reported (a worker logs in just after the pool's first answer). Each
    /// field is filled once, so a pool has at most three of these.
    Details,
}

#[derive(Clone, Debug)]
pub struct PoolEvent {
    pub kind: PoolEventKind,
    pub pool: PoolRecord,
}

/// Index of a record in its registry, for callers that see a pool again and
/// again (a flow's later packets) and only need to move its last-seen time.
pub type PoolId = u32;

#[derive(Default)]
pub struct PoolRegistry {
    records: Vec<PoolRecord>,
    index: FxHashMap<PoolKey, PoolId>,
    max_pools: usize,
    /// Sightings of new pools refused because the registry was full.
    pub dropped_full: u64,
}

impl PoolRegistry {
    pub fn new(max_pools: usize) -> PoolRegistry {
        PoolRegistry {
            records: Vec::new(),
            index: FxHashMap::default(),
            max_pools,
            dropped_full: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, key: &PoolKey) -> Option<&PoolRecord> {
        self.index.get(key).map(|&i| &self.records[i as usize])
    }

    /// Records sorted by server address then dialect, for stable output.
    pub fn sorted(&self) -> Vec<&PoolRecord> {
        let mut v: Vec<&PoolRecord> = self.records.iter().collect();
        v.sort_by(|a, b| (a.server, &a.dialect).cmp(&(b.server, &b.dialect)));
        v
    }

    /// A later packet of a flow already counted: only the last-seen time moves.
    pub fn touch(&mut self, id: PoolId, ts: Timestamp) {
        if let Some(r) = self.records.get_mut(id as usize) {
            if ts > r.last_seen {
                r.last_seen = ts;
            }
        }
    }

    /// Merges one flow's evidence. Returns the record's id, and the event to
    /// report if any: a pool is reported when first seen and again when it
    /// becomes confirmed; later sightings only move `last_seen`.
    #[allow(clippy::too_many_arguments)] // each argument is one distinct fact of the sighting
    pub fn observe(
        &mut self,
        server: SocketAddr,
        dialect: &str,
        client: IpAddr,
        confidence: Confidence,
        sighting: &Sighting,
        new_flow: bool,
        ts: Timestamp,
    ) -> (Option<PoolId>, Option<PoolEvent>) {
        let key = PoolKey {
            server,
            dialect: dialect.to_string(),
        };
        let id = match self.index.get(&key) {
            Some(&id) => id,
            None if self.records.len() >= self.max_pools => {
                self.dropped_full += 1;
                return (None, None);
            }
            None => {
                let id = self.records.len() as PoolId;
                self.records
                    .push(PoolRecord::new(server, dialect, confidence, ts));
                self.index.insert(key, id);
                let rec = &mut self.records[id as usize];
                let _ = merge(rec, client, sighting, new_flow, ts);
                return (
                    Some(id),
                    Some(PoolEvent {
                        kind: PoolEventKind::New,
                        pool: rec.clone(),
                    }),
                );
            }
        };
        let rec = &mut self.records[id as usize];
        let upgraded = confidence > rec.confidence;
        if upgraded {
            rec.confidence = confidence;
        }
        let filled = merge(rec, client, sighting, new_flow, ts);
        let kind = if upgraded {
            Some(PoolEventKind::Confirmed)
        } else if filled {
            Some(PoolEventKind::Details)
        } else {
            None
        };
        let event = kind.map(|kind| PoolEvent {
            kind,
            pool: rec.clone(),
        });
        (Some(id), event)
    }
}

/// Folds a sighting into a record; true when it filled the agent, login or
/// algorithm for the first time.
fn merge(
    rec: &mut PoolRecord,
    client: IpAddr,
    s: &Sighting,
    new_flow: bool,
    ts: Timestamp,
) -> bool {
    if new_flow {
        rec.flows += 1;
    }
    if ts > rec.last_seen {
        rec.last_seen = ts;
    }
    if ts < rec.first_seen {
        rec.first_seen = ts;
    }
    if !rec.clients.contains(&client) {
        if rec.clients.len() < MAX_CLIENTS_PER_POOL {
            rec.clients.insert(client);
        } else {
            rec.clients_dropped += 1;
        }
    }
    for m in &s.methods {
        if rec.methods.len() < MAX_METHODS_PER_POOL {
            rec.methods.insert(m.clone());
        }
    }
    let mut filled = false;
    for (have, seen) in [
        (&mut rec.agent, &s.agent),
        (&mut rec.login, &s.login),
        (&mut rec.algo, &s.algo),
    ] {
        if have.is_none() && seen.is_some() {
            have.clone_from(seen);
            filled = true;
        }
    }
    filled
}
