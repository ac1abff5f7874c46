//! Floods of distinct flows: the table stays at `max_flows`, every eviction
//! is counted, buffers go back with the flows, and a real session is still
//! found afterwards.

use std::time::Duration;

use stratumguard::engine::EngineConfig;
use stratumguard::pools::{Confidence, PoolEventKind};

use crate::wire::{engine, events, Conn, Flood, CLIENT, SERVER, T0};

const MILLION: u32 = 1_000_000;

/// Small enough that a million flows overflow it 250 times over.
const SMALL_TABLE: usize = 4096;

fn small_table() -> EngineConfig {
    EngineConfig {
        max_flows: SMALL_TABLE,
        ..EngineConfig::default()
    }
}

#[test]
fn a_syn_scan_of_a_million_flows_keeps_the_table_at_max_flows_and_counts_every_eviction() {
    // Limit: EngineConfig::max_flows (the flow table's least-recently-seen eviction).
    let mut e = engine(small_table());
    Flood::new(b"").run(&mut e, MILLION, 10_000, |e| {
        assert!(e.flows() <= SMALL_TABLE, "table grew to {}", e.flows());
    });

    let s = e.stats();
    assert_eq!(s.flows_created, u64::from(MILLION));
    assert_eq!(e.flows(), SMALL_TABLE);
    assert_eq!(s.flows_tracked, SMALL_TABLE as u64);
    assert_eq!(
        s.flows_evicted_pressure,
        u64::from(MILLION) - SMALL_TABLE as u64
    );
    // A SYN carries nothing to read: no flow holds a byte.
    assert_eq!(s.buffered_bytes, 0);
}

#[test]
fn a_million_one_packet_flows_carrying_a_brace_keep_the_table_and_buffers_bounded() {
    // Limits: max_flows, and evicted flows giving their buffered bytes back
    // to the shared budget. Each flow opens a JSON line (`{`) that never
    // ends, so each live flow holds exactly one byte.
    let mut e = engine(small_table());
    Flood::new(b"{").run(&mut e, MILLION, 10_000, |e| {
        let s = e.stats();
        assert!(e.flows() <= SMALL_TABLE, "table grew to {}", e.flows());
        assert_eq!(
            s.buffered_bytes,
            e.flows() as u64,
            "buffered bytes must be the live flows' one byte each"
        );
    });

    let s = e.stats();
    assert_eq!(s.flows_created, u64::from(MILLION));
    assert_eq!(
        s.flows_evicted_pressure,
        u64::from(MILLION) - SMALL_TABLE as u64
    );
    assert_eq!(s.buffer_refused, 0);
    e.clear_flows();
    assert_eq!(e.stats().buffered_bytes, 0);
}

#[test]
fn flows_idle_past_the_timeout_are_evicted_and_counted() {
    // Limit: EngineConfig::idle_timeout.
    let cfg = EngineConfig {
        idle_timeout: Duration::from_secs(60),
        ..small_table()
    };
    let mut e = engine(cfg);
    Flood::new(b"{").run(&mut e, 3000, 1000, |_| {});
    assert_eq!(e.flows(), 3000);

    // Still inside the timeout: nothing goes.
    e.expire(T0.plus(Duration::from_secs(59)));
    assert_eq!(e.flows(), 3000);
    e.expire(T0.plus(Duration::from_secs(61)));
    let s = e.stats();
    assert_eq!(e.flows(), 0);
    assert_eq!(s.flows_evicted_idle, 3000);
    assert_eq!(s.buffered_bytes, 0);
}

const SUBSCRIBE: &[u8] =
    b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cgminer/4.10.0\"]}\n";
const ANSWER: &[u8] =
    b"{\"id\":1,\"result\":[[[\"mining.notify\",\"ae68\"]],\"08000002\",4],\"error\":null}\n";

fn pool_session() -> Conn {
    Conn::new(([192, 168, 7, 7], 50_000), ([198, 51, 100, 77], 3333))
}

#[test]
fn a_stratum_session_after_a_flood_that_overflowed_the_table_is_still_confirmed() {
    let mut e = engine(small_table());
    Flood::new(b"{").run(&mut e, 100_000, 100_000, |_| {});
    assert!(
        e.stats().flows_evicted_pressure > 0,
        "the flood must overflow the table"
    );
    assert!(events(&mut e).is_empty(), "the flood itself is not a pool");

    let mut c = pool_session();
    c.ts = T0.plus(Duration::from_secs(1));
    c.handshake(&mut e);
    c.send(&mut e, CLIENT, SUBSCRIBE, 1460);
    c.send(&mut e, SERVER, ANSWER, 1460);

    let pool = e
        .pools()
        .sorted()
        .into_iter()
        .find(|p| p.server == "198.51.100.77:3333".parse().unwrap())
        .expect("the pool is found after the flood");
    assert_eq!(pool.dialect, "stratum-v1");
    assert_eq!(pool.confidence, Confidence::Confirmed);
}

#[test]
fn a_session_interleaved_with_a_flood_smaller_than_the_table_is_still_confirmed() {
    // The table evicts the least recently seen flow: a flood that fits
    // beside a live session does not push the session out.
    let mut e = engine(small_table());
    let mut c = pool_session();
    c.handshake(&mut e);
    c.send(&mut e, CLIENT, SUBSCRIBE, 1460);
    Flood::new(b"{").run(&mut e, SMALL_TABLE as u32 - 1, 1000, |_| {});
    c.ts = T0.plus(Duration::from_secs(1));
    c.send(&mut e, SERVER, ANSWER, 1460);

    let kinds: Vec<PoolEventKind> = events(&mut e).into_iter().map(|ev| ev.kind).collect();
    assert_eq!(kinds, vec![PoolEventKind::New, PoolEventKind::Confirmed]);
    assert_eq!(e.stats().flows_evicted_pressure, 0);
}
