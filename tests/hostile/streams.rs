//! Hostile byte streams inside one connection: endless lines, huge and deep
//! JSON, bytes that are not text, and floods of tiny out-of-order segments.
//! Each is cut at its limit and counted, and the bytes held stay bounded
//! after every segment, which is what keeps the work per segment constant.
//! Times are printed, not asserted: timed tests fail on a busy machine for
//! reasons that are not the code's (the benchmark and `examples/flood.rs`
//! measure speed).

use std::time::{Duration, Instant};

use stratumguard::engine::{Engine, EngineConfig};
use stratumguard::flow::reassembly::MAX_QUEUED_BYTES;
use stratumguard::pools::Confidence;
use stratumguard::stratum::framing::MAX_LINE;

use crate::wire::{engine, unlimited_depth, Conn, TinySegments, CLIENT};

const MB: usize = 1024 * 1024;
/// Large segments (as captured with segmentation offload) keep the 100 MB
/// streams quick in a debug build; the limits do not depend on the size.
const BIG_SEGMENT: usize = 16 * 1024;

fn conn(n: u8) -> Conn {
    Conn::new(([192, 168, 1, n], 40_000), ([203, 0, 113, 5], 3333))
}

fn subscribe_line(id: u32) -> Vec<u8> {
    format!("{{\"id\":{id},\"method\":\"mining.subscribe\",\"params\":[\"cgminer/4.10.0\"]}}\n")
        .into_bytes()
}

/// Streams `len` bytes of `fill` (no newline) from the client after `prefix`,
/// checking the bytes held after every segment. Returns the time taken.
fn endless_line(e: &mut Engine, c: &mut Conn, prefix: &[u8], fill: u8, len: usize) -> Duration {
    let started = Instant::now();
    c.send(e, CLIENT, prefix, BIG_SEGMENT);
    let chunk = vec![fill; BIG_SEGMENT];
    let mut sent = 0;
    while sent < len {
        c.send(e, CLIENT, &chunk, BIG_SEGMENT);
        sent += chunk.len();
        let held = e.stats().buffered_bytes as usize;
        assert!(held <= MAX_LINE, "{held} bytes held after {sent} sent");
    }
    started.elapsed()
}

#[test]
fn an_endless_line_of_100_mb_is_cut_once_and_never_holds_more_than_the_line_cap() {
    // Limit: framing::MAX_LINE (the inspection depth is out of the way).
    let mut e = engine(unlimited_depth());
    let mut small = conn(1);
    small.handshake(&mut e);
    let t_small = endless_line(&mut e, &mut small, b"{\"a\":\"", b'a', 25 * MB);
    assert_eq!(e.stats().lines_too_long, 1);

    let mut big = conn(2);
    big.handshake(&mut e);
    let t_big = endless_line(&mut e, &mut big, b"{\"a\":\"", b'a', 100 * MB);
    let s = e.stats();
    assert_eq!(s.lines_too_long, 2, "each endless line is cut once");
    assert_eq!(s.buffered_bytes, 0, "a cut line holds nothing");
    eprintln!("25 MB in {t_small:?}, 100 MB in {t_big:?}");
}

#[test]
fn an_endless_line_at_the_default_depth_stops_the_flow_being_read() {
    // Limit: EngineConfig::inspect_depth. Past it the direction is not
    // read at all, so a mining call sent after 100 MB is not seen.
    let mut e = engine(EngineConfig::default());
    let mut c = conn(3);
    c.handshake(&mut e);
    endless_line(&mut e, &mut c, b"{\"a\":\"", b'a', 100 * MB);
    c.send(&mut e, CLIENT, b"\n", BIG_SEGMENT);
    c.send(&mut e, CLIENT, &subscribe_line(1), BIG_SEGMENT);

    let s = e.stats();
    assert_eq!(s.depth_reached, 1);
    assert_eq!(s.buffered_bytes, 0);
    assert!(
        e.pools().is_empty(),
        "bytes past the depth must not be read"
    );
}

#[test]
fn a_100_mb_json_document_is_cut_and_the_next_line_of_the_flow_is_still_read() {
    // Limit: framing::MAX_LINE, then resynchronising at the next newline.
    let mut e = engine(unlimited_depth());
    let mut c = conn(4);
    c.handshake(&mut e);
    let head = b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"";
    endless_line(&mut e, &mut c, head, b'z', 100 * MB);
    c.send(&mut e, CLIENT, b"\"]}\n", BIG_SEGMENT);
    assert!(
        e.pools().is_empty(),
        "a document cut at the cap is not read"
    );

    c.send(&mut e, CLIENT, &subscribe_line(2), BIG_SEGMENT);
    let s = e.stats();
    assert_eq!(s.lines_too_long, 1);
    assert_eq!(s.json_errors, 0, "a cut line is dropped, not parsed");
    let pools = e.pools().sorted();
    assert_eq!(pools.len(), 1, "the line after the cut is read");
    assert_eq!(pools[0].confidence, Confidence::Suspected);
}

#[test]
fn json_nested_100000_deep_is_cut_at_the_line_cap_without_exhausting_the_stack() {
    // Limit: framing::MAX_LINE; the line never reaches the JSON parser.
    let mut e = engine(unlimited_depth());
    let mut c = conn(5);
    c.handshake(&mut e);
    let deep = [
        b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":".as_slice(),
        &b"[".repeat(100_000),
        &b"]".repeat(100_000),
        b"}\n",
    ]
    .concat();
    c.send(&mut e, CLIENT, &deep, 1460);
    let s = e.stats();
    assert_eq!(s.lines_too_long, 1);
    assert_eq!(s.buffered_bytes, 0);
    assert!(e.pools().is_empty());
}

#[test]
fn json_nested_deeper_than_the_parser_allows_is_a_counted_json_error() {
    // Limit: serde_json's recursion limit (128 levels), for a deep line
    // that fits under the line cap.
    let mut e = engine(unlimited_depth());
    let mut c = conn(6);
    c.handshake(&mut e);
    let deep = [
        b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":".as_slice(),
        &b"[".repeat(10_000),
        &b"]".repeat(10_000),
        b"}\n",
    ]
    .concat();
    assert!(deep.len() < MAX_LINE);
    c.send(&mut e, CLIENT, &deep, 1460);
    let s = e.stats();
    assert_eq!(s.json_errors, 1);
    assert_eq!(s.lines_too_long, 0);
    assert!(
        e.pools().is_empty(),
        "a line that does not parse is not a mining call"
    );
}

#[test]
fn invalid_utf8_and_nul_bytes_in_lines_are_json_errors_and_reading_goes_on() {
    let mut e = engine(EngineConfig::default());
    let mut c = conn(7);
    c.handshake(&mut e);
    c.send(
        &mut e,
        CLIENT,
        b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"\xff\xfe\xc0\"]}\n",
        1460,
    );
    c.send(
        &mut e,
        CLIENT,
        b"{\"id\":2,\0\"method\":\"mining.subscribe\",\"params\":[]}\n",
        1460,
    );
    assert_eq!(e.stats().json_errors, 2);
    assert!(e.pools().is_empty());

    c.send(&mut e, CLIENT, &subscribe_line(3), 1460);
    assert_eq!(
        e.pools().len(),
        1,
        "a valid line after the bad ones is read"
    );
}

/// Sends `count` one-byte segments with every other byte missing, so that
/// nothing ever becomes contiguous. Returns the time taken.
fn holes(e: &mut Engine, c: &mut Conn, count: u32, mut check: impl FnMut(&Engine)) -> Duration {
    let started = Instant::now();
    let mut seg = TinySegments::new(c);
    let base = c.next[CLIENT];
    for i in 0..count {
        let p = seg.packet(base.wrapping_add(1 + 2 * i));
        c.feed(e, p);
        if i % 1024 == 0 {
            check(e);
        }
    }
    c.next[CLIENT] = base.wrapping_add(2 * count);
    started.elapsed()
}

#[test]
fn a_million_tiny_out_of_order_segments_are_dropped_counted_and_hold_a_bounded_queue() {
    // Limits: reassembly::MAX_QUEUED_SEGMENTS and MAX_QUEUED_BYTES (the
    // inspection depth is out of the way).
    let mut e = engine(unlimited_depth());
    let bounded = |e: &Engine| {
        let held = e.stats().buffered_bytes as usize;
        assert!(held <= MAX_QUEUED_BYTES + MAX_LINE, "{held} bytes held");
    };
    let mut small = conn(8);
    small.handshake(&mut e);
    let t_small = holes(&mut e, &mut small, 250_000, bounded);
    let mut big = conn(9);
    big.handshake(&mut e);
    let t_big = holes(&mut e, &mut big, 1_000_000, bounded);

    let s = e.stats();
    assert!(s.ooo_dropped > 0, "a full queue must drop and count");
    assert!(
        s.gaps_skipped >= 1_250_000 / 17,
        "every overflow skips its holes"
    );
    eprintln!("250k segments in {t_small:?}, 1M in {t_big:?}");
}

#[test]
fn tiny_out_of_order_segments_stop_costing_work_at_the_inspection_depth() {
    // Limit: EngineConfig::inspect_depth counts every payload byte, queued
    // or not. Once it is reached, further segments touch no queue: the
    // reassembly counters stop moving.
    let mut e = engine(EngineConfig::default());
    let mut c = conn(10);
    c.handshake(&mut e);
    let depth = EngineConfig::default().inspect_depth as u32;
    holes(&mut e, &mut c, depth + 1, |_| {});
    let at_depth = e.stats();
    assert_eq!(at_depth.depth_reached, 1);
    assert!(at_depth.ooo_dropped > 0);

    holes(&mut e, &mut c, 100_000, |_| {});
    let after = e.stats();
    assert_eq!(after.ooo_dropped, at_depth.ooo_dropped);
    assert_eq!(after.gaps_skipped, at_depth.gaps_skipped);
    assert_eq!(after.buffered_bytes, 0);
}
