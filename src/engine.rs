//! Wires the packet path together. `analyze` and `monitor` both drive one
//! `Engine`; nothing in here knows whether packets come from a file or a device.

use std::sync::Arc;

use crate::decode::LinkType;
use crate::pools::{PoolEvent, PoolRegistry};
use crate::signatures::SignatureSet;
use crate::stats::Stats;
use crate::time::Timestamp;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_flows: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_flows: 262_144 }
    }
}

pub struct Engine {
    stats: Stats,
    pools: PoolRegistry,
    events: Vec<PoolEvent>,
    _sigs: Arc<SignatureSet>,
}

impl Engine {
    pub fn new(_cfg: EngineConfig, sigs: Arc<SignatureSet>) -> Engine {
        Engine {
            stats: Stats::default(),
            pools: PoolRegistry::new(1),
            events: Vec::new(),
            _sigs: sigs,
        }
    }

    /// Feeds one captured packet. `wire_len` is the packet's length on the wire,
    /// which exceeds `data.len()` when the snap length cut it.
    pub fn process(&mut self, _ts: Timestamp, _link: LinkType, data: &[u8], _wire_len: u32) {
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
    }

    /// Moves the pool events raised since the last call into `out`.
    pub fn drain_events(&mut self, out: &mut Vec<PoolEvent>) {
        out.append(&mut self.events);
    }

    /// Evicts flows idle for longer than the timeout, as of `now`.
    pub fn expire(&mut self, _now: Timestamp) {}

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn pools(&self) -> &PoolRegistry {
        &self.pools
    }

    /// Number of flows currently tracked.
    pub fn flows(&self) -> usize {
        0
    }
}
