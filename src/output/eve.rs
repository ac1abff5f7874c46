//! JSON lines close to Suricata's EVE format (skeleton).

use crate::block::BlockStatus;
use crate::pools::PoolEvent;

/// One EVE-style JSON object (no trailing newline) for a pool event.
pub fn pool_event(_ev: &PoolEvent, _block: Option<&BlockStatus>) -> String {
    String::new()
}
