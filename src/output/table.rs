//! The readable table (skeleton).

use crate::block::BlockStatus;
use crate::pools::PoolEvent;

/// One human-readable line for a pool event as it happens (monitor).
pub fn event_line(_ev: &PoolEvent, _block: Option<&BlockStatus>) -> String {
    String::new()
}
