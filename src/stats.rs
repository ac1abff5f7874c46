//! Counters for everything the packet path saw, skipped or dropped.
//!
//! Hostile or broken input is never logged per packet: it moves a counter
//! here, and the counters are printed in the summary and the periodic stats.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets that were not TCP over IPv4/IPv6 (UDP, ARP, ...): not inspected.
    pub non_tcp: u64,
    /// Packets whose headers could not be decoded (bad lengths, unknown link type).
    pub decode_errors: u64,
    /// Packets cut short by the snap length; decoded as far as they go.
    pub truncated: u64,
    pub flows_created: u64,
    pub flows_evicted_idle: u64,
    /// Flows evicted because the table was full (the oldest idle one goes first).
    pub flows_evicted_pressure: u64,
    /// Segments not buffered because a direction's out-of-order budget was spent.
    pub ooo_dropped: u64,
    /// Times a direction gave up waiting for missing bytes and skipped ahead.
    pub gaps_skipped: u64,
    /// Lines longer than the line cap: cut, and framing resumed at the next newline.
    pub lines_too_long: u64,
    /// Lines that looked like JSON but did not parse (junk, too deep, cut).
    pub json_errors: u64,
    /// Directions that reached the inspection depth undecided.
    pub depth_reached: u64,
    pub pools_dropped_full: u64,
    /// Times a flow could not buffer because the shared buffer budget was spent.
    pub buffer_refused: u64,
    /// Bytes held between packets right now (a gauge, not a counter).
    pub buffered_bytes: u64,
    /// Flows in the table right now (a gauge).
    pub flows_tracked: u64,
}
