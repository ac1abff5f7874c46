//! Malformed packets fed to the engine: header lengths that lie, packets cut
//! by the snap length, link types nobody decodes. Each is skipped and
//! counted (or read as far as it was captured), never a panic, never a flow.

use stratumguard::decode::LinkType;
use stratumguard::engine::EngineConfig;
use stratumguard::pools::Confidence;

use crate::wire::{engine, Conn, CLIENT, T0};

const ETH: usize = 14;

fn subscribe_packet() -> Vec<u8> {
    let mut c = Conn::new(([192, 168, 2, 2], 40_000), ([203, 0, 113, 6], 3333));
    c.next[CLIENT] = 1;
    c.packet(
        CLIENT,
        1,
        false,
        true,
        b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n",
    )
}

/// A copy of `p` with `edit` applied.
fn edited(p: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = p.to_vec();
    edit(&mut v);
    v
}

#[test]
fn bad_ip_and_tcp_header_lengths_are_decode_errors_and_make_no_flow() {
    let good = subscribe_packet();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "IPv4 header length 16 bytes",
            edited(&good, |p| p[ETH] = 0x44),
        ),
        ("IPv4 header length 0", edited(&good, |p| p[ETH] = 0x40)),
        ("IP version 7", edited(&good, |p| p[ETH] = 0x75)),
        (
            "TCP data offset 16 bytes",
            edited(&good, |p| p[ETH + 20 + 12] = 0x40),
        ),
        (
            "TCP data offset past the end of the packet",
            edited(&good, |p| {
                p[ETH + 20 + 12] = 0xf0;
                p.truncate(ETH + 20 + 30);
                let total = (20 + 30) as u16;
                p[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
            }),
        ),
        ("cut inside the TCP header", good[..ETH + 20 + 10].to_vec()),
        ("cut inside the IPv4 header", good[..ETH + 12].to_vec()),
        ("cut inside the Ethernet header", good[..9].to_vec()),
        ("empty", Vec::new()),
    ];

    for (what, p) in &cases {
        let mut e = engine(EngineConfig::default());
        e.process(T0, LinkType::ETHERNET, p, good.len() as u32);
        let s = e.stats();
        assert_eq!(s.decode_errors, 1, "{what}: must be counted as undecodable");
        assert_eq!(s.flows_created, 0, "{what}: must not make a flow");
    }
}

#[test]
fn an_ipv4_total_length_shorter_than_its_header_is_read_from_the_captured_bytes() {
    // Capture on a host with segmentation offload records total length 0
    // (or a stale one): like etherparse's lax slicing, decoding then goes by
    // the captured bytes, so the line is still read, and nothing panics.
    let p = edited(&subscribe_packet(), |p| {
        p[ETH + 2..ETH + 4].copy_from_slice(&10u16.to_be_bytes())
    });
    let mut e = engine(EngineConfig::default());
    e.process(T0, LinkType::ETHERNET, &p, p.len() as u32);
    let s = e.stats();
    assert_eq!(s.decode_errors, 0);
    assert_eq!(s.flows_created, 1);
    assert_eq!(e.pools().len(), 1);
}

#[test]
fn a_packet_cut_by_the_snap_length_is_counted_and_its_captured_bytes_still_read() {
    // The subscribe line is whole; the snap length cut the bytes after it.
    let mut c = Conn::new(([192, 168, 2, 3], 40_000), ([203, 0, 113, 6], 3333));
    let mut e = engine(EngineConfig::default());
    c.handshake(&mut e);
    let line = b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n";
    let payload = [line.as_slice(), &[b'q'; 900]].concat();
    let p = c.packet(CLIENT, c.next[CLIENT], false, true, &payload);
    let captured = &p[..p.len() - 900];
    e.process(T0, LinkType::ETHERNET, captured, p.len() as u32);

    let s = e.stats();
    assert_eq!(s.truncated, 1);
    assert_eq!(s.decode_errors, 0);
    let pools = e.pools().sorted();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].confidence, Confidence::Suspected);
}

#[test]
fn link_types_nobody_decodes_are_decode_errors_not_crashes() {
    let p = subscribe_packet();
    let mut e = engine(EngineConfig::default());
    for link in [LinkType(147), LinkType(-1), LinkType(i32::MAX), LinkType(9)] {
        e.process(T0, link, &p, p.len() as u32);
    }
    let s = e.stats();
    assert_eq!(s.decode_errors, 4);
    assert_eq!(s.flows_created, 0);
}
