//! What `monitor` prints: one line per pool event and the statistics lines.
//!
//! Event lines and the JSON stats object come from `output`, the same
//! formatters `analyze` uses; the readable per-interface lines carry
//! libpcap's counters, which only live capture has, so they are made here.

use std::time::Duration;

use serde_json::json;
use stratumguard::block::BlockStatus;
use stratumguard::capture::live::InterfaceStats;
use stratumguard::output::summary::{group, limits_line};
use stratumguard::output::{eve, table};
use stratumguard::pools::PoolEvent;
use stratumguard::stats::Stats;

/// The line for one pool event, as a table line or an EVE-style JSON object.
pub fn event(ev: &PoolEvent, status: Option<&BlockStatus>, json: bool) -> String {
    if json {
        eve::pool_event(ev, status)
    } else {
        table::event_line(ev, status)
    }
}

/// Readable statistics lines for stderr: one per interface, one for the
/// engine, and one for the limits hit when any was.
pub fn stats_lines(
    ifaces: &[InterfaceStats],
    engine: &Stats,
    pools: usize,
    uptime: Duration,
    last: bool,
) -> Vec<String> {
    let label = if last { "final stats" } else { "stats" };
    let mut lines = Vec::new();
    for i in ifaces {
        lines.push(format!(
            "stratumguard: {label}: {}: {} packets received, {} dropped by the kernel, \
             {} dropped by the interface, {} dropped by our queue{}",
            i.name,
            group(i.received),
            group(i.kernel_dropped),
            group(i.if_dropped),
            group(i.queue_dropped),
            if i.running { "" } else { " (stopped)" },
        ));
    }
    lines.push(format!(
        "stratumguard: {label}: engine: {} packets, {} bytes, {} flows tracked, {} pools found, \
         {} flows evicted, up {} s",
        group(engine.packets),
        group(engine.bytes),
        group(engine.flows_tracked),
        group(pools as u64),
        group(engine.flows_evicted_idle + engine.flows_evicted_pressure),
        uptime.as_secs(),
    ));
    if let Some(limits) = limits_line(engine) {
        lines.push(format!("stratumguard: {label}: {limits}"));
    }
    lines
}

/// The statistics as one `{"event_type":"stats",...}` JSON object: the
/// engine's counters under `stats`, as `analyze` prints them, plus the
/// capture counters of every interface.
pub fn stats_json(
    ifaces: &[InterfaceStats],
    engine: &Stats,
    pools: usize,
    uptime: Duration,
    last: bool,
) -> String {
    let extra = json!({
        "final": last,
        "uptime_s": uptime.as_secs(),
        "pools": pools,
        "capture": ifaces,
    });
    eve::stats(engine, extra)
}
