//! A real session fed every way TCP could cut it: every single cut point of
//! the client's stream, and byte by byte, must give the same verdict as the
//! session whole. The session is the xmr-stak Monero login in nDPI's
//! `mining.pcapng` (captures/public/ndpi-mining-multi.pcapng).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use etherparse::PacketBuilder;
use stratumguard::decode::{decode, LinkType};
use stratumguard::engine::{Engine, EngineConfig};
use stratumguard::pools::{Confidence, PoolRecord};
use stratumguard::signatures::SignatureSet;
use stratumguard::time::Timestamp;

const POOL: &str = "178.32.196.217:9050";
/// Enough of each direction for the login, its answer and the first job.
const TAKE: usize = 1500;

/// The in-order payload of each direction of the flow to `POOL`, from the capture.
fn real_streams() -> (IpAddr, Vec<u8>, Vec<u8>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/public/ndpi-mining-multi.pcapng");
    let mut cap = pcap::Capture::from_file(&path).unwrap();
    let pool: SocketAddr = POOL.parse().unwrap();
    let (mut to_pool, mut from_pool) = (BTreeMap::new(), BTreeMap::new());
    let mut client = None;
    while let Ok(p) = cap.next_packet() {
        let Ok(seg) = decode(LinkType::ETHERNET, p.data) else {
            continue;
        };
        if seg.payload.is_empty() {
            continue;
        }
        if SocketAddr::new(seg.dst, seg.dst_port) == pool {
            client = Some(seg.src);
            to_pool
                .entry(seg.seq)
                .or_insert_with(|| seg.payload.to_vec());
        } else if SocketAddr::new(seg.src, seg.src_port) == pool {
            from_pool
                .entry(seg.seq)
                .or_insert_with(|| seg.payload.to_vec());
        }
    }
    (
        client.expect("the capture holds the Monero flow"),
        join(to_pool),
        join(from_pool),
    )
}

/// Joins segments by sequence number, dropping retransmitted bytes.
fn join(segs: BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = None;
    for (seq, p) in segs {
        let start = next.map_or(0, |n: u32| n.saturating_sub(seq) as usize);
        if start < p.len() {
            out.extend_from_slice(&p[start..]);
        }
        next = Some(seq + p.len() as u32);
    }
    out.truncate(TAKE);
    out
}

struct Session {
    client: IpAddr,
    pool: SocketAddr,
}

impl Session {
    fn packet(&self, to_pool: bool, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (IpAddr::V4(c), IpAddr::V4(s)) = (self.client, self.pool.ip()) else {
            panic!("IPv4 flow")
        };
        let (src, dst, sp, dp) = if to_pool {
            (c, s, 51000, self.pool.port())
        } else {
            (s, c, self.pool.port(), 51000)
        };
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src.octets(), dst.octets(), 64)
            .tcp(sp, dp, seq, 64240);
        let b = match flags {
            "S" => b.syn(),
            "SA" => b.syn().ack(1),
            _ => b.ack(1),
        };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Runs the handshake, the client's stream cut at `cuts`, then the pool's stream.
    fn verdict(
        &self,
        client_stream: &[u8],
        cuts: &[usize],
        server_stream: &[u8],
    ) -> Vec<PoolRecord> {
        let sigs = Arc::new(SignatureSet::builtin().unwrap());
        let mut e = Engine::new(EngineConfig::default(), sigs);
        let mut t = 0u64;
        let mut feed = |e: &mut Engine, p: Vec<u8>| {
            t += 1;
            e.process(Timestamp(t), LinkType::ETHERNET, &p, p.len() as u32);
        };
        feed(&mut e, self.packet(true, 1000, "S", b""));
        feed(&mut e, self.packet(false, 5000, "SA", b""));
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&client_stream.len())) {
            feed(
                &mut e,
                self.packet(true, 1001 + prev as u32, "A", &client_stream[prev..c]),
            );
            prev = c;
        }
        feed(&mut e, self.packet(false, 5001, "A", server_stream));
        e.pools().sorted().into_iter().cloned().collect()
    }
}

fn check(found: &[PoolRecord], what: &str) {
    assert_eq!(found.len(), 1, "{what}: {found:?}");
    let p = &found[0];
    assert_eq!(p.server.to_string(), POOL, "{what}");
    assert_eq!(p.dialect, "cryptonote", "{what}");
    assert_eq!(p.confidence, Confidence::Confirmed, "{what}");
    assert!(
        p.agent
            .as_deref()
            .is_some_and(|a| a.starts_with("xmr-stak")),
        "{what}: {:?}",
        p.agent
    );
    assert!(p.login.is_some(), "{what}");
}

#[test]
fn the_real_session_whole_is_a_confirmed_cryptonote_pool() {
    let (client, c, s) = real_streams();
    let sess = Session {
        client,
        pool: POOL.parse().unwrap(),
    };
    check(&sess.verdict(&c, &[], &s), "whole");
}

#[test]
fn every_single_cut_of_the_client_stream_gives_the_same_verdict() {
    let (client, c, s) = real_streams();
    let sess = Session {
        client,
        pool: POOL.parse().unwrap(),
    };
    for i in 1..c.len() {
        check(&sess.verdict(&c, &[i], &s), &format!("cut at {i}"));
    }
}

#[test]
fn the_client_stream_byte_by_byte_gives_the_same_verdict() {
    let (client, c, s) = real_streams();
    let sess = Session {
        client,
        pool: POOL.parse().unwrap(),
    };
    let cuts: Vec<usize> = (1..c.len()).collect();
    check(&sess.verdict(&c, &cuts, &s), "byte by byte");
}

#[test]
fn every_prefix_of_the_client_stream_alone_never_confirms() {
    // Without the pool's answer, no prefix may look confirmed.
    let (client, c, _) = real_streams();
    let sess = Session {
        client,
        pool: POOL.parse().unwrap(),
    };
    for i in 0..=c.len() {
        let found = sess.verdict(&c[..i], &[], b"");
        assert!(
            found.iter().all(|p| p.confidence == Confidence::Suspected),
            "prefix {i}: {found:?}"
        );
    }
}
