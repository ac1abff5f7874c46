//! Floods the engine at its default limits and prints the peak memory.
//!
//!     cargo run --release --example flood
//!
//! Three floods, each on a fresh engine in this one process:
//!
//! 1. a SYN scan of 1 000 000 distinct flows;
//! 2. 1 000 000 one-packet flows whose payload is `{` (each opens a JSON
//!    line, so each live flow keeps its reading state and one buffered byte);
//! 3. on top of the table left full by flood 2, flows that each send almost
//!    a whole line cap of bytes without a newline, until the shared buffer
//!    budget refuses more: the worst case, a full table and a spent budget.
//!
//! The peak resident set (VmHWM) must stay under [`MEMORY_CAP_MIB`]: the
//! flow table full of reading flows (about 150 MiB at the default 262 144
//! flows, see `engine::DEFAULT_MAX_FLOWS`), plus the buffer budget
//! (`stratum::budget::DEFAULT_BUFFER_BUDGET`, 256 MiB), plus the allocator's
//! slack on buffers that grew by doubling, plus the program itself. The
//! example exits with status 1 when the cap is passed or a bound broke.

use std::process::ExitCode;
use std::time::Instant;

use stratumguard::engine::{Engine, EngineConfig, DEFAULT_MAX_FLOWS};
use stratumguard::stratum::budget::DEFAULT_BUFFER_BUDGET;
use stratumguard::stratum::framing::MAX_LINE;

#[path = "../tests/hostile/wire.rs"]
mod wire;

use wire::{engine, peak_rss_kib, Conn, Flood, CLIENT};

/// Peak memory the default limits are documented to stay under, in MiB.
const MEMORY_CAP_MIB: u64 = 512;

const FLOWS: u32 = 1_000_000;

fn main() -> ExitCode {
    let mut ok = true;
    println!(
        "defaults: max_flows {DEFAULT_MAX_FLOWS}, buffer budget {} MiB; memory cap {MEMORY_CAP_MIB} MiB",
        DEFAULT_BUFFER_BUDGET >> 20
    );

    let (_, held) = flood("syn scan", b"");
    ok &= held;
    let (mut e, held) = flood("one-packet `{` flows", b"{");
    ok &= held;

    // Flows that each hold a line just under the cap until the budget is
    // spent, evicting `{` flows from the full table as they come.
    let started = Instant::now();
    let line = vec![b'a'; MAX_LINE - 16];
    let wanted = DEFAULT_BUFFER_BUDGET / line.len() * 5 / 4;
    let mut most_held = 0;
    for n in 0..wanted {
        let client = ([10, 1, (n >> 8) as u8, n as u8], 40_000 + (n >> 16) as u16);
        let mut c = Conn::new(client, ([203, 0, 113, 50], 3333));
        c.handshake(&mut e);
        c.send(&mut e, CLIENT, b"{", 1460);
        c.send(&mut e, CLIENT, &line, 16 * 1024);
        most_held = most_held.max(e.stats().buffered_bytes);
    }
    let s = e.stats();
    ok &= most_held as usize <= DEFAULT_BUFFER_BUDGET && s.buffer_refused > 0;
    println!(
        "partial-line flows: {wanted} flows wanting {} MiB in {:.2} s; most held {} MiB, budget refusals {}, lines cut {}; peak RSS so far {}",
        (wanted * (line.len() + 1)) >> 20,
        started.elapsed().as_secs_f64(),
        most_held >> 20,
        s.buffer_refused,
        s.lines_too_long,
        mib(peak_rss_kib()),
    );
    drop(e);

    let peak = peak_rss_kib().unwrap_or(u64::MAX);
    let under = peak / 1024 < MEMORY_CAP_MIB;
    println!(
        "peak memory (VmHWM): {} MiB, cap {MEMORY_CAP_MIB} MiB: {}",
        peak / 1024,
        if under { "under" } else { "OVER" }
    );
    if ok && under {
        ExitCode::SUCCESS
    } else {
        if !ok {
            println!("a bound did not hold (see above)");
        }
        ExitCode::FAILURE
    }
}

/// A million one-packet flows on a fresh engine; the engine is returned
/// with its table full, and whether the table's bounds held.
fn flood(name: &str, payload: &[u8]) -> (Engine, bool) {
    let started = Instant::now();
    let mut e = engine(EngineConfig::default());
    let mut max_seen = 0;
    Flood::new(payload).run(&mut e, FLOWS, 4096, |e| max_seen = max_seen.max(e.flows()));
    let s = e.stats();
    let held = max_seen <= DEFAULT_MAX_FLOWS
        && s.flows_evicted_pressure == u64::from(FLOWS) - DEFAULT_MAX_FLOWS as u64;
    println!(
        "{name}: {FLOWS} flows in {:.2} s; most tracked at once {max_seen}, evicted (table full) {}, buffered {} bytes; peak RSS so far {}",
        started.elapsed().as_secs_f64(),
        s.flows_evicted_pressure,
        s.buffered_bytes,
        mib(peak_rss_kib()),
    );
    (e, held)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("unknown".into(), |k| format!("{} MiB", k / 1024))
}
