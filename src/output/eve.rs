//! JSON lines close to Suricata's EVE format, so that pipelines built for EVE
//! (`timestamp`, `event_type`, `src_ip`, `dest_ip`, `dest_port`, `proto`)
//! take stratumguard's records as they are.

use serde_json::{json, Value};

use crate::block::BlockStatus;
use crate::pools::{PoolEvent, PoolRecord};
use crate::stats::Stats;

/// One EVE-style JSON object (no trailing newline) for a pool event.
pub fn pool_event(ev: &PoolEvent, block: Option<&BlockStatus>) -> String {
    let mut v = pool_value(&ev.pool, block);
    v["mining"]["event"] = json!(ev.kind);
    v.to_string()
}

/// One JSON object for a pool record (the `analyze` output).
pub fn pool_record(p: &PoolRecord, block: Option<&BlockStatus>) -> String {
    pool_value(p, block).to_string()
}

fn pool_value(p: &PoolRecord, block: Option<&BlockStatus>) -> Value {
    let mut v = json!({
        "timestamp": p.last_seen,
        "event_type": "mining_pool",
        "proto": "TCP",
        "src_ip": p.clients.iter().next().map(|c| c.to_string()),
        "dest_ip": p.server.ip().to_string(),
        "dest_port": p.server.port(),
        "mining": {
            "dialect": p.dialect,
            "confidence": p.confidence,
            "methods": p.methods,
            "agent": p.agent,
            "login": p.login,
            "algo": p.algo,
            "clients": p.clients,
            "clients_not_listed": p.clients_dropped,
            "flows": p.flows,
            "first_seen": p.first_seen,
            "last_seen": p.last_seen,
        },
    });
    if let Some(b) = block {
        v["block"] = match b {
            BlockStatus::Blocked => json!({"blocked": true}),
            BlockStatus::WouldBlock => {
                json!({"blocked": false, "dry_run": true, "reason": "dry run: would be blocked"})
            }
            BlockStatus::NotBlocked(why) => json!({"blocked": false, "reason": why}),
        };
    }
    v
}

/// The statistics object, with whatever extra fields the caller adds.
pub fn stats(stats: &Stats, extra: Value) -> String {
    let mut v = json!({
        "timestamp": crate::time::Timestamp::now(),
        "event_type": "stats",
        "stats": stats,
    });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    v.to_string()
}

/// A problem with one input, as a JSON object.
pub fn error(file: &str, message: &str) -> String {
    json!({"timestamp": crate::time::Timestamp::now(), "event_type": "error", "file": file, "error": message})
        .to_string()
}
