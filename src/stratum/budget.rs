//! The shared budget for bytes that flows hold between packets.
//!
//! Each direction's limits (queued segments, a partial line) are small, but
//! a table of many flows times those limits is not. This budget caps their
//! sum: when it is spent, a direction drops what it would have buffered (a
//! gap, then resync) instead of allocating, and the refusal is counted.

use std::cell::Cell;

/// Default cap on buffered bytes across all flows: well inside the memory a
/// sensor can spare, and thousands of times what honest traffic needs at once.
pub const DEFAULT_BUFFER_BUDGET: usize = 256 * 1024 * 1024;

///
/// Cells, not `&mut`: the reassembler and the framer it feeds both draw on
/// the budget within one call.
#[derive(Debug)]
pub struct Budget {
    held: Cell<usize>,
    cap: usize,
    refused: Cell<u64>,
}

impl Budget {
    pub fn new(cap: usize) -> Budget {
        Budget {
            held: Cell::new(0),
            cap,
            refused: Cell::new(0),
        }
    }

    /// Reserves `n` bytes; false (and counted) when that would pass the cap.
    pub fn take(&self, n: usize) -> bool {
        if self.held.get() + n > self.cap {
            self.refused.set(self.refused.get() + 1);
            return false;
        }
        self.held.set(self.held.get() + n);
        true
    }

    pub fn give(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
    }

    pub fn held(&self) -> usize {
        self.held.get()
    }

    /// Times a direction could not buffer because the budget was spent.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_BUFFER_BUDGET)
    }
}
