//! What the user reads: the table, JSON lines (EVE-style) and statistics.

pub mod eve;
pub mod summary;
pub mod table;
