//! The one-line summaries of a run and the counters of the limits it hit.

use std::time::Duration;

use crate::stats::Stats;

/// `files 3, packets 1,234, ... ` for the end of `analyze`.
pub fn analyze_line(
    files: usize,
    stats: &Stats,
    pools: (usize, usize),
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!(
        "files {files}, packets {}, bytes {}, flows {}, pools {} ({} confirmed, {} suspected), elapsed {:.2} s, {:.1} MB/s, {} packets/s",
        group(stats.packets),
        group(stats.bytes),
        group(stats.flows_created),
        group((pools.0 + pools.1) as u64),
        group(pools.0 as u64),
        group(pools.1 as u64),
        secs,
        stats.bytes as f64 / 1e6 / secs,
        group((stats.packets as f64 / secs) as u64),
    )
}

/// The limits that were hit and the input that was skipped; `None` when
/// nothing was.
pub fn limits_line(s: &Stats) -> Option<String> {
    let items = [
        (s.flows_evicted_pressure, "flows evicted (table full)"),
        (s.flows_evicted_idle, "flows evicted (idle)"),
        (s.ooo_dropped, "out-of-order segments not queued"),
        (s.gaps_skipped, "stream gaps skipped"),
        (s.lines_too_long, "overlong lines cut"),
        (s.json_errors, "lines not valid JSON"),
        (s.depth_reached, "directions past inspection depth"),
        (s.buffer_refused, "buffer budget refusals"),
        (s.pools_dropped_full, "pools not stored (registry full)"),
        (s.decode_errors, "undecodable packets"),
        (s.truncated, "packets cut by snap length"),
    ];
    let hit: Vec<String> = items
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{} {what}", group(*n)))
        .collect();
    (!hit.is_empty()).then(|| format!("limits and skips: {}", hit.join(", ")))
}

/// 1234567 as "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1000), "1,000");
        assert_eq!(super::group(1234567), "1,234,567");
    }
}
