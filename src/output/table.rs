//! The readable output: one line per pool, aligned in columns.

use crate::block::BlockStatus;
use crate::pools::{PoolEvent, PoolEventKind, PoolRecord};

/// Longest value shown in a column; the JSON output has them whole.
const MAX_CELL: usize = 40;

const HEADER: [&str; 8] = [
    "POOL",
    "DIALECT",
    "CONFIDENCE",
    "FLOWS",
    "CLIENTS",
    "AGENT",
    "LOGIN",
    "ALGO",
];

/// The table of pools for `analyze`, header included.
pub fn pool_table(pools: &[&PoolRecord], block: &[Option<BlockStatus>]) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    let mut details = Vec::new();
    for (i, p) in pools.iter().enumerate() {
        rows.push(cells(p));
        let mut d = format!(
            "seen {} .. {}; methods: {}",
            p.first_seen,
            p.last_seen,
            p.methods.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        if let Some(Some(b)) = block.get(i) {
            d.push_str(&format!("; {}", block_text(b)));
        }
        details.push(d);
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i > 0 {
            out.push_str("    ");
            out.push_str(&details[i - 1]);
            out.push('\n');
        }
    }
    out
}

/// One line for a pool event as it happens (`monitor`).
pub fn event_line(ev: &PoolEvent, block: Option<&BlockStatus>) -> String {
    let p = &ev.pool;
    let what = match ev.kind {
        PoolEventKind::New => "new pool",
        PoolEventKind::Confirmed => "pool confirmed",
        PoolEventKind::Details => "pool details",
    };
    let c = cells(p);
    let mut line = format!(
        "{} {what}: {} {} {} clients={} agent={} login={} algo={} methods={}",
        p.last_seen,
        c[0],
        c[1],
        c[2],
        c[4],
        c[5],
        c[6],
        c[7],
        p.methods.iter().cloned().collect::<Vec<_>>().join(",")
    );
    if let Some(b) = block {
        line.push_str(&format!(" [{}]", block_text(b)));
    }
    line
}

fn block_text(b: &BlockStatus) -> String {
    match b {
        BlockStatus::Blocked => "blocked".to_string(),
        BlockStatus::WouldBlock => "would be blocked (dry run)".to_string(),
        BlockStatus::NotBlocked(why) => format!("not blocked: {why}"),
    }
}

fn cells(p: &PoolRecord) -> Vec<String> {
    let mut clients: Vec<String> = p.clients.iter().take(3).map(|c| c.to_string()).collect();
    let more = p.clients.len().saturating_sub(3) as u64 + p.clients_dropped;
    if more > 0 {
        clients.push(format!("+{more}"));
    }
    vec![
        p.server.to_string(),
        p.dialect.clone(),
        p.confidence.as_str().to_string(),
        p.flows.to_string(),
        clients.join(","),
        cell(p.agent.as_deref()),
        cell(p.login.as_deref()),
        cell(p.algo.as_deref()),
    ]
}

fn cell(v: Option<&str>) -> String {
    match v {
        None => "-".to_string(),
        Some(s) if s.chars().count() > MAX_CELL => {
            let cut: String = s.chars().take(MAX_CELL - 1).collect();
            format!("{cut}…")
        }
        Some(s) => s.to_string(),
    }
}
