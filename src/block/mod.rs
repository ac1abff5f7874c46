//! Blocking: turns pool records into firewall entries.
//!
//! STUB in the skeleton commit; the blocking work replaces this file and adds
//! policy, state and backends beside it. Keep the names below: `analyze` and
//! `monitor` call them.

use crate::pools::PoolRecord;
use crate::time::Timestamp;

/// Options shared by `analyze --block` and `monitor --block`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct BlockOptions {
    /// Firewall backend to feed with the pools found.
    #[arg(long, value_name = "BACKEND")]
    pub block: Option<String>,
}

/// What the blocker did with one pool record, shown beside the detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockStatus {
    Blocked,
    NotBlocked(String),
}

pub struct Blocker;

impl Blocker {
    pub fn from_options(_o: &BlockOptions) -> anyhow::Result<Option<Blocker>> {
        Ok(None)
    }

    pub fn observe(&mut self, _pool: &PoolRecord, _now: Timestamp) -> anyhow::Result<BlockStatus> {
        Ok(BlockStatus::NotBlocked("blocking not built".into()))
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
