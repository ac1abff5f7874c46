//! Link, IP and TCP decoding: from captured bytes to a [`TcpSegment`] view.
//!
//! Decoding is lax, in the way of etherparse's lax slicing: a packet cut by
//! the snap length still yields the headers and the part of the payload that
//! was captured, and says that it is incomplete. Nothing here allocates, and
//! nothing here panics on any input: every length is checked by etherparse or
//! by the slice patterns below.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4HeaderSlice, LaxNetSlice, LaxSlicedPacket,
    TcpHeaderSlice, TransportSlice,
};

/// A pcap link-layer type (the `LINKTYPE_*` number in the file header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkType(pub i32);

impl LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// OpenBSD loopback: like NULL but the family is in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    pub const RAW: LinkType = LinkType(101);
    /// Some old files carry DLT_RAW's platform number instead of LINKTYPE_RAW.
    pub const RAW_ALT: LinkType = LinkType(12);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const LINUX_SLL2: LinkType = LinkType(276);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);

    /// Whether [`decode`] understands this link type.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            LinkType::NULL
                | LinkType::ETHERNET
                | LinkType::LOOP
                | LinkType::RAW
                | LinkType::RAW_ALT
                | LinkType::LINUX_SLL
                | LinkType::LINUX_SLL2
                | LinkType::IPV4
                | LinkType::IPV6
        )
    }
}

/// Header flags of a TCP segment that the flow table acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// A decoded TCP segment, borrowing its payload from the packet.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub flags: TcpFlags,
    pub payload: &'a [u8],
    /// The payload was cut by the snap length: more bytes followed on the wire.
    pub truncated: bool,
}

/// Why a packet yielded no TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not TCP over IP (ARP, UDP, ICMP, ...). Not an error.
    NotTcp,
    /// An IP fragment: not reassembled (see the note on [`decode`]).
    Fragment,
    /// The link type is not one we decode.
    UnsupportedLink,
    /// Headers were malformed or cut before the TCP header ended.
    Malformed,
}

/// Decodes one captured packet.
///
/// Known shortcoming: IP fragments are skipped, not reassembled. TCP stacks
/// avoid fragmentation (path MTU discovery), and Stratum messages are small,
/// so the loss is a fragmented segment now and then; reassembling would need
/// a fragment table with its own memory budget.
pub fn decode(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    if link == LinkType::ETHERNET {
        if let Some(seg) = ethernet_ipv4_tcp(data) {
            return seg;
        }
    }
    decode_lax(link, data)
}

/// The common case, untagged Ethernet carrying IPv4 carrying TCP, read with
/// etherparse's header slices alone. Building a whole `LaxSlicedPacket`
/// (several hundred bytes, moved layer by layer) costs more per packet than
/// everything else on a decided flow's path, and this case is most packets.
/// `None` means "not this case", and the lax path takes it from the start.
fn ethernet_ipv4_tcp(data: &[u8]) -> Option<Result<TcpSegment<'_>, Skip>> {
    let eth = Ethernet2HeaderSlice::from_slice(data).ok()?;
    if eth.ether_type() != EtherType::IPV4 {
        return None;
    }
    let ip_bytes = &data[eth.slice().len()..];
    let ip = Ipv4HeaderSlice::from_slice(ip_bytes).ok()?;
    if ip.protocol() != IpNumber::TCP {
        return Some(Err(Skip::NotTcp));
    }
    if ip.is_fragmenting_payload() {
        return Some(Err(Skip::Fragment));
    }
    let total = usize::from(ip.total_len());
    let header = ip.slice().len();
    if total < header {
        return None;
    }
    // Ethernet pads short frames: the IP length says where the packet ends.
    // A snap length may have cut it shorter still.
    let end = total.min(ip_bytes.len());
    let tcp_bytes = &ip_bytes[header..end];
    let tcp = TcpHeaderSlice::from_slice(tcp_bytes).ok()?;
    Some(Ok(TcpSegment {
        src: IpAddr::V4(Ipv4Addr::from(ip.source())),
        dst: IpAddr::V4(Ipv4Addr::from(ip.destination())),
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload: &tcp_bytes[tcp.slice().len()..],
        truncated: total > ip_bytes.len(),
    }))
}

/// Every link type and every shape of packet, with etherparse's lax slicing.
fn decode_lax(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let sliced = match link {
        LinkType::ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::Malformed)?,
        LinkType::RAW | LinkType::RAW_ALT | LinkType::IPV4 | LinkType::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Malformed)?
        }
        LinkType::LINUX_SLL => {
            // 16-byte header; the protocol (an EtherType) is its last two bytes.
            let (hdr, rest) = split(data, 16)?;
            LaxSlicedPacket::from_ether_type(ether_type(hdr[14], hdr[15]), rest)
        }
        LinkType::LINUX_SLL2 => {
            // 20-byte header; the protocol is its first two bytes.
            let (hdr, rest) = split(data, 20)?;
            LaxSlicedPacket::from_ether_type(ether_type(hdr[0], hdr[1]), rest)
        }
        LinkType::NULL | LinkType::LOOP => {
            // The family is written in the capturing host's byte order, so
            // look at both ends of the word rather than guess the order.
            let (hdr, rest) = split(data, 4)?;
            let family = if hdr[0] != 0 { hdr[0] } else { hdr[3] };
            match family {
                2 | 24 | 28 | 30 => LaxSlicedPacket::from_ip(rest).map_err(|_| Skip::Malformed)?,
                _ => return Err(Skip::NotTcp),
            }
        }
        _ => return Err(Skip::UnsupportedLink),
    };

    let (src, dst, ip_payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                IpAddr::V4(Ipv4Addr::from(h.source())),
                IpAddr::V4(Ipv4Addr::from(h.destination())),
                v4.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::V6(Ipv6Addr::from(h.source())),
                IpAddr::V6(Ipv6Addr::from(h.destination())),
                v6.payload(),
            )
        }
        Some(LaxNetSlice::Arp(_)) | None => {
            return Err(if sliced.stop_err.is_some() {
                Skip::Malformed
            } else {
                Skip::NotTcp
            })
        }
    };
    if ip_payload.ip_number != etherparse::IpNumber::TCP {
        return Err(Skip::NotTcp);
    }
    if ip_payload.fragmented {
        return Err(Skip::Fragment);
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        _ => return Err(Skip::Malformed),
    };
    Ok(TcpSegment {
        src,
        dst,
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload: tcp.payload(),
        truncated: ip_payload.incomplete,
    })
}

fn split(data: &[u8], n: usize) -> Result<(&[u8], &[u8]), Skip> {
    if data.len() < n {
        return Err(Skip::Malformed);
    }
    Ok(data.split_at(n))
}

fn ether_type(hi: u8, lo: u8) -> EtherType {
    EtherType(u16::from_be_bytes([hi, lo]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 3333, 1000, 64240);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ethernet_tcp_yields_ports_seq_and_payload() {
        let pkt = tcp_v4(b"{\"id\":1}\n");
        let seg = decode(LinkType::ETHERNET, &pkt).unwrap();
        assert_eq!(seg.src_port, 40000);
        assert_eq!(seg.dst_port, 3333);
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.payload, b"{\"id\":1}\n");
        assert!(!seg.truncated);
    }

    #[test]
    fn snaplen_cut_packet_keeps_captured_payload_and_says_so() {
        let pkt = tcp_v4(b"{\"method\":\"mining.subscribe\"}\n");
        let cut = &pkt[..pkt.len() - 10];
        let seg = decode(LinkType::ETHERNET, cut).unwrap();
        assert!(seg.truncated);
        assert_eq!(seg.payload, &b"{\"method\":\"mining.subscribe\"}\n"[..20]);
    }

    #[test]
    fn every_prefix_of_a_packet_decodes_or_skips_without_panic() {
        let pkt = tcp_v4(b"hello");
        for n in 0..pkt.len() {
            for link in [
                LinkType::ETHERNET,
                LinkType::RAW,
                LinkType::LINUX_SLL,
                LinkType::LINUX_SLL2,
                LinkType::NULL,
            ] {
                let _ = decode(link, &pkt[..n]);
            }
        }
    }

    #[test]
    fn the_fast_path_and_the_lax_path_agree_on_every_prefix() {
        let pkt = tcp_v4(b"{\"method\":\"mining.subscribe\"}\n");
        for n in 0..=pkt.len() {
            let fast = ethernet_ipv4_tcp(&pkt[..n]);
            let lax = decode_lax(LinkType::ETHERNET, &pkt[..n]);
            if let Some(fast) = fast {
                match (fast, lax) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(
                            (a.src, a.dst, a.seq, a.payload, a.truncated),
                            (b.src, b.dst, b.seq, b.payload, b.truncated),
                            "prefix {n}"
                        );
                    }
                    (a, b) => assert_eq!(a.map(|s| s.payload), b.map(|s| s.payload), "prefix {n}"),
                }
            }
        }
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut pkt = tcp_v4(b"");
        pkt.extend_from_slice(&[0u8; 6]);
        assert_eq!(decode(LinkType::ETHERNET, &pkt).unwrap().payload, b"");
    }

    #[test]
    fn unknown_link_type_is_reported_as_unsupported() {
        assert_eq!(
            decode(LinkType(9999), &[0u8; 64]).unwrap_err(),
            Skip::UnsupportedLink
        );
    }
}
