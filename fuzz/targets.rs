//! Fuzz targets, shared by the stable driver (`cargo run --example fuzz`),
//! the libFuzzer targets in `fuzz/fuzz_targets/` and the regression tests in
//! `tests/hostile/`.
//!
//! Every target takes arbitrary bytes and must not panic. The targets also
//! check, after every step, the bounds the packet path promises (flows,
//! buffered bytes, pools), and at the end that every buffered byte went back
//! to the shared budget. A broken bound is a panic too, so every driver
//! reports it the way it reports a crash.
//!
//! Each target returns a small bit set of what the input reached (which
//! counters moved, what was detected). The stable driver has no coverage
//! instrumentation and uses these bits as a coarse stand-in: an input that
//! reaches a new combination joins the corpus.

#![allow(
    dead_code,
    reason = "each includer (driver, libFuzzer target, test) uses a different subset"
)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use etherparse::{PacketBuilder, TcpHeader};
use stratumguard::decode::LinkType;
use stratumguard::engine::{Engine, EngineConfig};
use stratumguard::pools::Confidence;
use stratumguard::signatures::{SignatureError, SignatureSet};
use stratumguard::stats::Stats;
use stratumguard::time::Timestamp;

/// A target: bytes in, bits of what was reached out.
pub type Target = fn(&[u8]) -> u64;

/// Every target by name, in the order `all` runs them.
pub const TARGETS: &[(&str, Target)] = &[
    ("packets", packets),
    ("tcp-flow", tcp_flow),
    ("signatures", signatures),
    ("state-file", state_file::state_file),
];

pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

// Limits far below the defaults, so that a few kilobytes of input reach
// every cap: eviction, the buffer budget, the inspection depth, the pool
// registry. The bounds the targets check are these numbers.
const FUZZ_MAX_FLOWS: usize = 8;
const FUZZ_IDLE_SECS: u64 = 30;
const FUZZ_INSPECT_DEPTH: usize = 8 * 1024;
/// Two directions of one flow can hold a queue and a partial line each
/// (about 128 KiB); this is less, so that the budget also runs out.
const FUZZ_BUFFER_BUDGET: usize = 96 * 1024;
const FUZZ_MAX_POOLS: usize = 4;

/// Packets per input in the `packets` target; the rest is ignored.
const MAX_PACKETS: usize = 4096;
/// Segments per input in the `tcp-flow` target.
const MAX_SEGMENTS: usize = 512;
/// Signature texts per input in the `signatures` target.
const MAX_SIGNATURE_FILES: usize = 8;

/// 2024-03-14 09:00:00 UTC, as the crafted captures use.
const START: Timestamp = Timestamp(1_710_406_800 * 1_000_000);

fn builtin() -> Arc<SignatureSet> {
    static SET: OnceLock<Arc<SignatureSet>> = OnceLock::new();
    SET.get_or_init(|| Arc::new(SignatureSet::builtin().expect("built-in signatures load")))
        .clone()
}

fn fuzz_engine(sigs: Arc<SignatureSet>) -> Engine {
    let cfg = EngineConfig {
        max_flows: FUZZ_MAX_FLOWS,
        idle_timeout: Duration::from_secs(FUZZ_IDLE_SECS),
        inspect_depth: FUZZ_INSPECT_DEPTH,
        buffer_budget: FUZZ_BUFFER_BUDGET,
        max_pools: FUZZ_MAX_POOLS,
    };
    Engine::new(cfg, sigs)
}

/// The bounds that must hold after any packet.
fn check_bounds(e: &Engine) {
    let s = e.stats();
    assert!(
        e.flows() <= FUZZ_MAX_FLOWS,
        "flow table over its cap: {}",
        e.flows()
    );
    assert!(
        s.buffered_bytes as usize <= FUZZ_BUFFER_BUDGET,
        "buffered bytes over the budget: {}",
        s.buffered_bytes
    );
    assert!(
        e.pools().len() <= FUZZ_MAX_POOLS,
        "pool registry over its cap"
    );
}

/// Ends a run: forgets every flow and checks that all their bytes went back.
fn finish(mut e: Engine) -> u64 {
    check_bounds(&e);
    let bits = features(&e);
    e.clear_flows();
    let s = e.stats();
    assert_eq!(s.flows_tracked, 0, "flows left after clearing");
    assert_eq!(
        s.buffered_bytes, 0,
        "the buffer budget leaked: bytes still held with no flow left"
    );
    bits
}

/// Which counters moved and what was detected, as bits.
fn features(e: &Engine) -> u64 {
    let s: Stats = e.stats();
    let counters = [
        s.non_tcp,
        s.decode_errors,
        s.truncated,
        s.flows_evicted_idle,
        s.flows_evicted_pressure,
        s.ooo_dropped,
        s.gaps_skipped,
        s.lines_too_long,
        s.json_errors,
        s.depth_reached,
        s.pools_dropped_full,
        s.buffer_refused,
    ];
    let mut bits = 0u64;
    for (i, c) in counters.iter().enumerate() {
        if *c > 0 {
            bits |= 1 << i;
        }
    }
    let dialects = &e.signatures().dialects;
    for p in e.pools().sorted() {
        let d = dialects
            .iter()
            .position(|d| d.name == p.dialect)
            .unwrap_or(15)
            % 16;
        let confirmed = u64::from(p.confidence == Confidence::Confirmed);
        bits |= 1 << (16 + 2 * d as u64 + confirmed);
        if p.agent.is_some() {
            bits |= 1 << 48;
        }
        if p.login.is_some() {
            bits |= 1 << 49;
        }
    }
    bits
}

// ---------------------------------------------------------------------------
// packets: arbitrary packets of an arbitrary link type.

/// Link types the first input byte picks from; the last is one no decoder knows.
const LINKS: [LinkType; 10] = [
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::RAW_ALT,
    LinkType(147),
];

/// Input: one byte choosing the link type, then records of
/// `[length: u16 le][time step: u8][bytes]`. The time step is in tenths of
/// a second, so that idle eviction happens too.
pub fn packets(data: &[u8]) -> u64 {
    let Some((&sel, mut rest)) = data.split_first() else {
        return 0;
    };
    let link = LINKS[sel as usize % LINKS.len()];
    let mut e = fuzz_engine(builtin());
    let mut ts = START;
    for n in 0..MAX_PACKETS {
        if rest.len() < 3 {
            break;
        }
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        ts = ts.plus(Duration::from_millis(100 * u64::from(rest[2])));
        rest = &rest[3..];
        let (pkt, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;

        // The record claims `len` bytes on the wire; fewer may have been captured.
        e.process(ts, link, pkt, len as u32);
        check_bounds(&e);
        if n % 8 == 7 {
            e.expire(ts);
        }
    }
    finish(e)
}

/// Encodes packets in the `packets` input format.
pub fn encode_packets(link: LinkType, packets: &[(u8, &[u8])]) -> Vec<u8> {
    let sel = LINKS
        .iter()
        .position(|l| *l == link)
        .unwrap_or(LINKS.len() - 1);
    let mut out = vec![sel as u8];
    for (step, p) in packets {
        let len = p.len().min(u16::MAX as usize);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.push(*step);
        out.extend_from_slice(&p[..len]);
    }
    out
}

// ---------------------------------------------------------------------------
// tcp-flow: well-formed TCP segments of one connection, with arbitrary
// sequence numbers, flags, payloads and snap lengths.

#[derive(Arbitrary, Debug)]
struct FlowInput {
    v6: bool,
    handshake: bool,
    isn: [u32; 2],
    server_port: u16,
    segments: Vec<SegmentInput>,
}

#[derive(Arbitrary, Debug)]
struct SegmentInput {
    from_server: bool,
    seq: SeqChoice,
    /// FIN, SYN, RST, PSH, ACK in the low bits.
    flags: u8,
    payload: PayloadChoice,
    /// Cut the captured packet to this many bytes (a snap length).
    snap: Option<u16>,
    pause_tenths: u8,
}

#[derive(Arbitrary, Debug)]
enum SeqChoice {
    /// Right after the last byte this side sent.
    Next,
    /// A retransmission or overlap.
    Back(u16),
    /// A hole before this segment.
    Ahead(u16),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum PayloadChoice {
    Bytes(Vec<u8>),
    /// A slice of one of the protocol messages below.
    Piece {
        which: u8,
        from: u16,
        to: u16,
    },
    Fill {
        byte: u8,
        len: u16,
    },
}

/// Real protocol messages, so that mutations start from text the detector
/// reads rather than from noise.
pub const MESSAGES: &[&str] = &[
    "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cgminer/4.10.0\"]}\n",
    "{\"id\":1,\"result\":[[[\"mining.notify\",\"ae68\"]],\"08000002\",4],\"error\":null}\n",
    "{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"worker.1\",\"x\"]}\n",
    "{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"bf\",\"4d16\",\"0100\",\"0704\",[],\"00000002\",\"1c2a\",\"504e\",false]}\n",
    "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"login\":\"wallet\",\"pass\":\"x\",\"agent\":\"XMRig/6.21.0\",\"algo\":[\"rx/0\"]}}\n",
    "{\"jsonrpc\":\"2.0\",\"method\":\"job\",\"params\":{\"blob\":\"0707\",\"job_id\":\"1\",\"target\":\"b88d0600\",\"algo\":\"rx/0\"}}\n",
    "{\"id\":1,\"jsonrpc\":\"2.0\",\"error\":null,\"result\":{\"id\":\"a\",\"job\":{\"blob\":\"07\",\"job_id\":\"1\",\"target\":\"b8\",\"algo\":\"rx/0\"},\"status\":\"OK\"}}\n",
    "{\"id\":1,\"method\":\"eth_submitLogin\",\"params\":[\"0xabc\"],\"worker\":\"rig\"}\n",
    "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"ethminer/0.19\",\"EthereumStratum/1.0.0\"]}\n",
    "POST / HTTP/1.1\r\nHost: pool\r\nUser-Agent: cgminer/4\r\nX-Mining-Extensions: midstate\r\nContent-Length: 44\r\n\r\n{\"method\": \"getwork\", \"params\": [], \"id\":0}",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\n{\"result\":{\"data\":\"00\"},\"id\":0}",
    "{\"id\":4,\"result\":true,\"error\":null}\n",
];

const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
const CLIENT_PORT: u16 = 40_000;
/// Payloads past this are cut, to keep a segment inside one IP packet.
const MAX_SEGMENT_PAYLOAD: usize = 9000;

pub fn tcp_flow(data: &[u8]) -> u64 {
    let mut u = Unstructured::new(data);
    let Ok(input) = FlowInput::arbitrary(&mut u) else {
        return 0;
    };
    let mut e = fuzz_engine(builtin());
    let mut ts = START;
    // Next sequence number each side would send: client, server.
    let mut next = [input.isn[0].wrapping_add(1), input.isn[1].wrapping_add(1)];
    let mut out = Vec::new();

    if input.handshake {
        let syn = segment_bytes(&input, false, input.isn[0], 0b0_0010, &[], &mut out);
        e.process(ts, LinkType::RAW, &syn, syn.len() as u32);
        let syn_ack = segment_bytes(&input, true, input.isn[1], 0b1_0010, &[], &mut out);
        e.process(ts, LinkType::RAW, &syn_ack, syn_ack.len() as u32);
    }

    for s in input.segments.iter().take(MAX_SEGMENTS) {
        let side = usize::from(s.from_server);
        let payload: Vec<u8> = match &s.payload {
            PayloadChoice::Bytes(b) => b.clone(),
            PayloadChoice::Piece { which, from, to } => {
                let m = MESSAGES[*which as usize % MESSAGES.len()].as_bytes();
                let a = *from as usize % (m.len() + 1);
                let b = (*to as usize % (m.len() + 1)).max(a);
                m[a..b].to_vec()
            }
            PayloadChoice::Fill { byte, len } => vec![*byte; *len as usize],
        };
        let payload = &payload[..payload.len().min(MAX_SEGMENT_PAYLOAD)];
        let seq = match s.seq {
            SeqChoice::Next => next[side],
            SeqChoice::Back(n) => next[side].wrapping_sub(u32::from(n)),
            SeqChoice::Ahead(n) => next[side].wrapping_add(u32::from(n)),
            SeqChoice::Raw(n) => n,
        };
        if !matches!(s.seq, SeqChoice::Back(_)) {
            next[side] = seq.wrapping_add(payload.len() as u32);
        }

        let pkt = segment_bytes(&input, s.from_server, seq, s.flags, payload, &mut out);
        let captured = match s.snap {
            Some(n) => &pkt[..(n as usize).min(pkt.len())],
            None => &pkt[..],
        };
        ts = ts.plus(Duration::from_millis(100 * u64::from(s.pause_tenths)));
        e.process(ts, LinkType::RAW, captured, pkt.len() as u32);
        check_bounds(&e);
        e.expire(ts);
    }
    finish(e)
}

/// One raw-IP packet of the fuzzed connection.
fn segment_bytes(
    f: &FlowInput,
    from_server: bool,
    seq: u32,
    flags: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Vec<u8> {
    let (sport, dport) = if from_server {
        (f.server_port, CLIENT_PORT)
    } else {
        (CLIENT_PORT, f.server_port)
    };
    let mut h = TcpHeader::new(sport, dport, seq, 64_240);
    h.fin = flags & 1 != 0;
    h.syn = flags & 2 != 0;
    h.rst = flags & 4 != 0;
    h.psh = flags & 8 != 0;
    h.ack = flags & 16 != 0;
    out.clear();
    let built = if f.v6 {
        let (s, d) = if from_server {
            (SERVER_V6, CLIENT_V6)
        } else {
            (CLIENT_V6, SERVER_V6)
        };
        PacketBuilder::ipv6(s.octets(), d.octets(), 64)
            .tcp_header(h)
            .write(out, payload)
    } else {
        let (s, d) = if from_server {
            (SERVER_V4, CLIENT_V4)
        } else {
            (CLIENT_V4, SERVER_V4)
        };
        PacketBuilder::ipv4(s.octets(), d.octets(), 64)
            .tcp_header(h)
            .write(out, payload)
    };
    built.expect("a segment under the IP size limit always builds");
    out.clone()
}

// ---------------------------------------------------------------------------
// signatures: the signature file loader, and a session read with what it loaded.

/// The shipped signature files, as seeds.
pub const SIGNATURE_FILES: &[&str] = &[
    include_str!("../signatures/stratum-v1.json"),
    include_str!("../signatures/ethereum-stratum.json"),
    include_str!("../signatures/eth-proxy.json"),
    include_str!("../signatures/cryptonote.json"),
    include_str!("../signatures/getwork-http.json"),
];

/// Input: signature texts separated by NUL bytes (which JSON text cannot hold).
pub fn signatures(data: &[u8]) -> u64 {
    let files: Vec<(String, String)> = data
        .split(|b| *b == 0)
        .take(MAX_SIGNATURE_FILES)
        .enumerate()
        .map(|(i, t)| {
            (
                format!("fuzz-{i}.json"),
                String::from_utf8_lossy(t).into_owned(),
            )
        })
        .collect();
    let set = match SignatureSet::from_texts(&files) {
        Ok(set) => set,
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.starts_with("fuzz-"),
                "error does not name the file: {text}"
            );
            // Tell the kinds of refusal apart by the start of their message.
            let kind = match err {
                SignatureError::Syntax { .. } => 0,
                SignatureError::Invalid { message, .. } => {
                    1 + message.bytes().take(12).map(u64::from).sum::<u64>() % 30
                }
                _ => 31,
            };
            return 1 << kind;
        }
    };
    let names: std::collections::BTreeSet<&str> =
        set.dialects.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names.len(),
        set.dialects.len(),
        "a dialect name loaded twice"
    );

    // Whatever was loaded must be safe to detect with: run every message
    // through an engine, as a client and as a server.
    let mut e = fuzz_engine(Arc::new(set));
    let mut ts = START;
    let mut out = Vec::new();
    let flow = FlowInput {
        v6: false,
        handshake: true,
        isn: [1000, 5000],
        server_port: 3333,
        segments: Vec::new(),
    };
    let mut next = [1001u32, 5001u32];
    for syn in [(false, 1000u32, 0b0_0010u8), (true, 5000, 0b1_0010)] {
        let p = segment_bytes(&flow, syn.0, syn.1, syn.2, &[], &mut out);
        e.process(ts, LinkType::RAW, &p, p.len() as u32);
    }
    for (i, m) in MESSAGES.iter().enumerate() {
        let from_server = i % 2 == 1;
        let side = usize::from(from_server);
        let p = segment_bytes(
            &flow,
            from_server,
            next[side],
            0b1_1000,
            m.as_bytes(),
            &mut out,
        );
        next[side] = next[side].wrapping_add(m.len() as u32);
        ts = ts.plus(Duration::from_millis(10));
        e.process(ts, LinkType::RAW, &p, p.len() as u32);
        check_bounds(&e);
    }
    1 << 32 | finish(e).rotate_left(33)
}

// ---------------------------------------------------------------------------
// state-file: the blocker's state file loader.

#[path = "state_file.rs"]
pub mod state_file;

/// Reads up to `max_windows` inputs of the `packets` format out of a capture
/// file, each at most `max_len` bytes, in file order.
pub fn packet_seeds_from_capture(path: &Path, max_len: usize, max_windows: usize) -> Vec<Vec<u8>> {
    let Ok(mut cap) = pcap::Capture::from_file(path) else {
        return Vec::new();
    };
    let link = LinkType(cap.get_datalink().0);
    let mut seeds = Vec::new();
    let mut window: Vec<Vec<u8>> = Vec::new();
    let mut size = 1;
    while let Ok(p) = cap.next_packet() {
        if size + 3 + p.data.len() > max_len && !window.is_empty() {
            let refs: Vec<(u8, &[u8])> = window.iter().map(|w| (0, w.as_slice())).collect();
            seeds.push(encode_packets(link, &refs));
            window.clear();
            size = 1;
            if seeds.len() >= max_windows {
                return seeds;
            }
        }
        size += 3 + p.data.len();
        window.push(p.data.to_vec());
    }
    if !window.is_empty() {
        let refs: Vec<(u8, &[u8])> = window.iter().map(|w| (0, w.as_slice())).collect();
        seeds.push(encode_packets(link, &refs));
    }
    seeds
}
