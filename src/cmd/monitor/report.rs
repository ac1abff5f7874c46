//! What `monitor` prints: one line per pool event and the statistics lines.
//!
//! Event lines come from `output::table` and `output::eve`, the same
//! formatters `analyze` uses. Statistics are specific to live capture (they
//! carry libpcap's counters), so they are formatted here.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use stratumguard::block::BlockStatus;
use stratumguard::capture::live::InterfaceStats;
use stratumguard::engine::Engine;
use stratumguard::output::{eve, table};
use stratumguard::pools::{PoolEvent, PoolEventKind};
use stratumguard::time::Timestamp;

/// The line for one pool event, as a table line or an EVE-style JSON object.
pub fn event(ev: &PoolEvent, status: Option<&BlockStatus>, json: bool) -> String {
    let line = if json { eve::pool_event(ev, status) } else { table::event_line(ev, status) };
    if !line.is_empty() {
        return line;
    }

    // A formatter with nothing to say must not swallow a detection: print the
    // essentials in the documented shape instead.
    if json {
        fallback_json(ev, status)
    } else {
        fallback_text(ev, status)
    }
}

fn fallback_json(ev: &PoolEvent, status: Option<&BlockStatus>) -> String {
    let p = &ev.pool;
    let mut obj = json!({
        "timestamp": p.last_seen,
        "event_type": "mining_pool",
        "proto": "TCP",
        "src_ip": p.clients.iter().next(),
        "dest_ip": p.server.ip(),
        "dest_port": p.server.port(),
        "mining": {
            "dialect": p.dialect,
            "confidence": p.confidence,
            "methods": p.methods,
            "agent": p.agent,
            "login": p.login,
            "algo": p.algo,
            "clients": p.clients,
            "flows": p.flows,
            "first_seen": p.first_seen,
            "last_seen": p.last_seen,
        },
    });
    if let Some(s) = status {
        obj["block"] = block_json(s);
    }
    obj.to_string()
}

fn fallback_text(ev: &PoolEvent, status: Option<&BlockStatus>) -> String {
    let p = &ev.pool;
    let what = match ev.kind {
        PoolEventKind::New => "new pool",
        PoolEventKind::Confirmed => "pool confirmed",
    };
    let clients: Vec<String> = p.clients.iter().map(|c| c.to_string()).collect();
    let mut line = format!(
        "{} {what} {} {} {} clients {}",
        p.last_seen,
        p.server,
        p.dialect,
        p.confidence.as_str(),
        clients.join(",")
    );
    if let Some(agent) = &p.agent {
        line.push_str(&format!(" agent {agent:?}"));
    }
    match status {
        Some(BlockStatus::Blocked) => line.push_str(" [blocked]"),
        Some(BlockStatus::NotBlocked(why)) => line.push_str(&format!(" [not blocked: {why}]")),
        None => {}
    }
    line
}

fn block_json(s: &BlockStatus) -> Value {
    match s {
        BlockStatus::Blocked => json!({ "blocked": true }),
        BlockStatus::NotBlocked(reason) => json!({ "blocked": false, "reason": reason }),
    }
}

/// Readable statistics lines for stderr: one per interface, then the engine.
pub fn stats_lines(
    ifaces: &[InterfaceStats],
    engine: &Engine,
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
            i.received,
            i.kernel_dropped,
            i.if_dropped,
            i.queue_dropped,
            if i.running { "" } else { " (stopped)" },
        ));
    }
    let s = engine.stats();
    lines.push(format!(
        "stratumguard: {label}: engine: {} packets, {} bytes, {} flows tracked, {} pools found, \
         {} flows evicted ({} idle, {} under pressure), up {}s",
        s.packets,
        s.bytes,
        engine.flows(),
        engine.pools().len(),
        s.flows_evicted_idle + s.flows_evicted_pressure,
        s.flows_evicted_idle,
        s.flows_evicted_pressure,
        uptime.as_secs(),
    ));

    // Every other engine counter that moved (skipped, cut, dropped input),
    // read from the serialised form so counters added later show up too.
    let shown = ["packets", "bytes", "flows_evicted_idle", "flows_evicted_pressure"];
    let others: Vec<String> = match serde_json::to_value(s) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter(|(k, v)| !shown.contains(&k.as_str()) && v.as_u64().is_some_and(|n| n > 0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect(),
        _ => Vec::new(),
    };
    if !others.is_empty() {
        lines.push(format!("stratumguard: {label}: engine counters: {}", others.join(", ")));
    }
    lines
}

/// The statistics as one `{"event_type":"stats",...}` JSON object.
pub fn stats_json(
    ifaces: &[InterfaceStats],
    engine: &Engine,
    uptime: Duration,
    last: bool,
) -> String {
    // A struct rather than `json!`, so the keys keep this order (EVE puts the
    // timestamp and event type first).
    #[derive(Serialize)]
    struct StatsLine<'a> {
        timestamp: Timestamp,
        event_type: &'static str,
        #[serde(rename = "final")]
        last: bool,
        uptime: u64,
        capture: &'a [InterfaceStats],
        engine: Value,
    }

    let mut engine_stats = serde_json::to_value(engine.stats()).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut engine_stats {
        map.insert("flows_tracked".into(), engine.flows().into());
        map.insert("pools".into(), engine.pools().len().into());
    }
    let line = StatsLine {
        timestamp: Timestamp::now(),
        event_type: "stats",
        last,
        uptime: uptime.as_secs(),
        capture: ifaces,
        engine: engine_stats,
    };
    serde_json::to_string(&line).unwrap_or_default()
}
