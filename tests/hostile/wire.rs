//! Packets for the hostile-input tests: one TCP connection with real
//! sequence numbers, and a flood generator that rewrites addresses in place
//! so that a million packets cost a million small writes, not a million
//! packet builds.

#![allow(
    dead_code,
    reason = "the flood example includes this file and uses only the flood half"
)]

use std::time::Duration;

use etherparse::PacketBuilder;
use stratumguard::decode::LinkType;
use stratumguard::engine::{Engine, EngineConfig};
use stratumguard::pools::PoolEvent;
use stratumguard::signatures::SignatureSet;
use stratumguard::time::Timestamp;

/// 2024-03-14 09:00:00 UTC, the crafted captures' epoch.
pub const T0: Timestamp = Timestamp(1_710_406_800 * 1_000_000);

pub fn engine(cfg: EngineConfig) -> Engine {
    let sigs = SignatureSet::builtin().expect("built-in signatures load");
    Engine::new(cfg, std::sync::Arc::new(sigs))
}

/// An engine whose only limit on a flow's reading is the one under test:
/// the inspection depth is out of the way.
pub fn unlimited_depth() -> EngineConfig {
    EngineConfig {
        inspect_depth: usize::MAX,
        ..EngineConfig::default()
    }
}

pub fn events(e: &mut Engine) -> Vec<PoolEvent> {
    let mut v = Vec::new();
    e.drain_events(&mut v);
    v
}

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// One IPv4 TCP connection over Ethernet, client to server.
pub struct Conn {
    pub client: ([u8; 4], u16),
    pub server: ([u8; 4], u16),
    /// Next sequence number of the client and of the server.
    pub next: [u32; 2],
    pub ts: Timestamp,
}

pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

impl Conn {
    pub fn new(client: ([u8; 4], u16), server: ([u8; 4], u16)) -> Conn {
        Conn {
            client,
            server,
            next: [1_000_000, 7_000_000],
            ts: T0,
        }
    }

    /// A packet from `side` with the given sequence number, flags and payload.
    pub fn packet(&self, side: usize, seq: u32, syn: bool, ack: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst, smac, dmac) = if side == CLIENT {
            (self.client, self.server, CLIENT_MAC, SERVER_MAC)
        } else {
            (self.server, self.client, SERVER_MAC, CLIENT_MAC)
        };
        let mut b = PacketBuilder::ethernet2(smac, dmac)
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 64_240);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(1);
        }
        let mut out = Vec::with_capacity(54 + payload.len());
        b.write(&mut out, payload).expect("packet builds");
        out
    }

    /// SYN, SYN-ACK and ACK.
    pub fn handshake(&mut self, e: &mut Engine) {
        let syn = self.packet(CLIENT, self.next[CLIENT], true, false, &[]);
        self.feed(e, &syn);
        let syn_ack = self.packet(SERVER, self.next[SERVER], true, true, &[]);
        self.feed(e, &syn_ack);
        self.next[CLIENT] = self.next[CLIENT].wrapping_add(1);
        self.next[SERVER] = self.next[SERVER].wrapping_add(1);
    }

    /// Sends `bytes` from `side` in order, in segments of at most `mss` bytes.
    pub fn send(&mut self, e: &mut Engine, side: usize, bytes: &[u8], mss: usize) {
        for chunk in bytes.chunks(mss) {
            let p = self.packet(side, self.next[side], false, true, chunk);
            self.next[side] = self.next[side].wrapping_add(chunk.len() as u32);
            self.feed(e, &p);
        }
    }

    pub fn feed(&mut self, e: &mut Engine, packet: &[u8]) {
        self.ts = self.ts.plus(Duration::from_micros(50));
        e.process(self.ts, LinkType::ETHERNET, packet, packet.len() as u32);
    }
}

/// Byte offsets in an Ethernet/IPv4/TCP packet without options.
const IP_SRC: usize = 14 + 12;
const TCP_SRC_PORT: usize = 14 + 20;
const TCP_SEQ: usize = 14 + 20 + 4;

/// A packet whose source address and port are rewritten for every flow of a
/// flood. Checksums are left stale: the engine does not verify them, as a
/// sensor reading a SPAN port must not (offloading leaves them wrong).
pub struct Flood {
    template: Vec<u8>,
}

impl Flood {
    /// SYNs (empty payload) or one-packet flows carrying `payload`.
    pub fn new(payload: &[u8]) -> Flood {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4([10, 0, 0, 0], [203, 0, 113, 9], 64)
            .tcp(1024, 443, 1, 64_240);
        let b = if payload.is_empty() {
            b.syn()
        } else {
            b.ack(1)
        };
        let mut template = Vec::new();
        b.write(&mut template, payload).expect("packet builds");
        Flood { template }
    }

    /// The packet of the `n`th flow: a distinct source address and port.
    pub fn packet(&mut self, n: u32) -> &[u8] {
        let addr = 0x0a00_0000 | (n >> 6);
        let port = 1024 + (n & 63) as u16;
        self.template[IP_SRC..IP_SRC + 4].copy_from_slice(&addr.to_be_bytes());
        self.template[TCP_SRC_PORT..TCP_SRC_PORT + 2].copy_from_slice(&port.to_be_bytes());
        &self.template
    }

    /// Feeds flows `0..count`, one packet each, a microsecond apart, calling
    /// `check` every `every` packets.
    pub fn run(&mut self, e: &mut Engine, count: u32, every: u32, mut check: impl FnMut(&Engine)) {
        for n in 0..count {
            let ts = T0.plus(Duration::from_micros(u64::from(n)));
            let p = self.packet(n);
            e.process(ts, LinkType::ETHERNET, p, p.len() as u32);
            if n % every == every - 1 {
                check(e);
            }
        }
    }
}

/// A one-byte segment of one flow at `seq`, rewritten in place.
pub struct TinySegments {
    template: Vec<u8>,
}

impl TinySegments {
    pub fn new(conn: &Conn) -> TinySegments {
        TinySegments {
            template: conn.packet(CLIENT, 0, false, true, b"x"),
        }
    }

    pub fn packet(&mut self, seq: u32) -> &[u8] {
        self.template[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&seq.to_be_bytes());
        &self.template
    }
}

/// VmHWM (peak resident set) of this process in KiB, from /proc.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
