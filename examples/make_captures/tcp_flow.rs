//! Crafted TCP conversations: a capture with a link type and a clock, and
//! flows on it that keep real sequence and acknowledgement numbers.
//!
//! Packets are built with etherparse's `PacketBuilder`. The link layers it
//! has no builder for (Linux SLL2, BSD loopback) get their few header bytes
//! written here in front of a bare IP packet.

use std::net::{IpAddr, SocketAddr};

use etherparse::{ip_number, VlanId};
use etherparse::{IpHeaders, Ipv4Header, Ipv6Header, LinuxSllPacketType, PacketBuilder, TcpHeader};

use super::capture_file::Record;

/// The link layer every packet of one capture is framed in.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    Ethernet,
    /// 802.1Q with this VLAN id.
    Vlan(u16),
    /// 802.1ad outer tag then 802.1Q inner tag.
    QinQ(u16, u16),
    /// Linux cooked capture v1 (`any` device, older libpcap).
    LinuxSll,
    /// Linux cooked capture v2 (`any` device, libpcap 1.10+).
    LinuxSll2,
    /// Bare IP packets, no link header.
    RawIp,
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    BsdLoopback,
}

impl Link {
    /// The pcap LINKTYPE number.
    pub fn linktype(self) -> u32 {
        match self {
            Link::Ethernet | Link::Vlan(_) | Link::QinQ(..) => 1,
            Link::LinuxSll => 113,
            Link::LinuxSll2 => 276,
            Link::RawIp => 101,
            Link::BsdLoopback => 0,
        }
    }
}

/// Thursday 2024-03-14 09:00:00 UTC: every crafted capture starts here, so
/// regenerating gives the same bytes.
const EPOCH_MICROS: u64 = 1_710_406_800 * 1_000_000;

/// Time between two consecutive packets unless a case waits longer.
const PACKET_GAP_MICROS: u64 = 700;

const CLIENT_MAC: [u8; 6] = [0x02, 0x5a, 0x11, 0x00, 0x00, 0x01];
const GATEWAY_MAC: [u8; 6] = [0x02, 0x5a, 0x11, 0x00, 0x00, 0xfe];

const WINDOW: u16 = 64_240;
const TTL: u8 = 64;

pub struct Capture {
    link: Link,
    clock: u64,
    ip_id: u16,
    pub records: Vec<Record>,
}

impl Capture {
    pub fn new(link: Link) -> Capture {
        Capture {
            link,
            clock: EPOCH_MICROS,
            ip_id: 0x3a00,
            records: Vec::new(),
        }
    }

    pub fn link(&self) -> Link {
        self.link
    }

    /// Lets time pass before the next packet (a miner thinking, a pool idling).
    pub fn wait_ms(&mut self, ms: u64) {
        self.clock += ms * 1_000;
    }

    fn push(
        &mut self,
        from_client: bool,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: TcpHeader,
        payload: &[u8],
    ) {
        self.clock += PACKET_GAP_MICROS;
        self.ip_id = self.ip_id.wrapping_add(1);
        let data = self.frame(from_client, src, dst, tcp, payload);
        self.records.push(Record {
            ts_micros: self.clock,
            data,
        });
    }

    fn frame(
        &self,
        from_client: bool,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: TcpHeader,
        payload: &[u8],
    ) -> Vec<u8> {
        let ip = ip_headers(src.ip(), dst.ip(), self.ip_id);
        let (src_mac, dst_mac) = if from_client {
            (CLIENT_MAC, GATEWAY_MAC)
        } else {
            (GATEWAY_MAC, CLIENT_MAC)
        };
        let mut out = Vec::new();
        match self.link {
            Link::Ethernet => PacketBuilder::ethernet2(src_mac, dst_mac)
                .ip(ip)
                .tcp_header(tcp)
                .write(&mut out, payload),
            Link::Vlan(id) => PacketBuilder::ethernet2(src_mac, dst_mac)
                .single_vlan(vlan_id(id))
                .ip(ip)
                .tcp_header(tcp)
                .write(&mut out, payload),
            Link::QinQ(outer, inner) => PacketBuilder::ethernet2(src_mac, dst_mac)
                .double_vlan(vlan_id(outer), vlan_id(inner))
                .ip(ip)
                .tcp_header(tcp)
                .write(&mut out, payload),
            Link::LinuxSll => {
                let kind = if from_client {
                    LinuxSllPacketType::OUTGOING
                } else {
                    LinuxSllPacketType::HOST
                };
                let mut addr = [0u8; 8];
                addr[..6].copy_from_slice(&src_mac);
                PacketBuilder::linux_sll(kind, 6, addr)
                    .ip(ip)
                    .tcp_header(tcp)
                    .write(&mut out, payload)
            }
            Link::LinuxSll2 => {
                out.extend_from_slice(&sll2_header(from_client, src.is_ipv6(), &src_mac));
                PacketBuilder::ip(ip)
                    .tcp_header(tcp)
                    .write(&mut out, payload)
            }
            Link::RawIp => PacketBuilder::ip(ip)
                .tcp_header(tcp)
                .write(&mut out, payload),
            Link::BsdLoopback => {
                // AF_INET is 2 everywhere; written little-endian as an x86 host would.
                assert!(
                    src.is_ipv4(),
                    "the crafted BSD loopback capture is IPv4 only"
                );
                out.extend_from_slice(&2u32.to_le_bytes());
                PacketBuilder::ip(ip)
                    .tcp_header(tcp)
                    .write(&mut out, payload)
            }
        }
        .expect("a crafted packet always fits");
        out
    }
}

fn vlan_id(id: u16) -> VlanId {
    VlanId::try_new(id).expect("crafted VLAN ids are below 4096")
}

fn ip_headers(src: IpAddr, dst: IpAddr, id: u16) -> IpHeaders {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, TTL, ip_number::TCP, s.octets(), d.octets())
                .expect("zero payload length is valid");
            h.identification = id;
            h.dont_fragment = true;
            IpHeaders::Ipv4(h, Default::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                hop_limit: TTL,
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            },
            Default::default(),
        ),
        _ => panic!("a flow's two ends must be the same IP version"),
    }
}

/// The 20-byte SLL2 header: protocol, reserved, interface index, ARPHRD type,
/// packet type, address length, address padded to 8 bytes.
fn sll2_header(from_client: bool, ipv6: bool, mac: &[u8; 6]) -> [u8; 20] {
    let mut h = [0u8; 20];
    let ethertype: u16 = if ipv6 { 0x86dd } else { 0x0800 };
    h[0..2].copy_from_slice(&ethertype.to_be_bytes());
    h[4..8].copy_from_slice(&2u32.to_be_bytes());
    h[8..10].copy_from_slice(&1u16.to_be_bytes());
    h[10] = if from_client { 4 } else { 0 };
    h[11] = 6;
    h[12..18].copy_from_slice(mac);
    h
}

/// Which way a segment travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }

    fn other(self) -> Dir {
        match self {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        }
    }
}

/// One TCP connection. `next[d]` is the next sequence number the sender in
/// direction `d` will use; acknowledgements always cover everything the
/// other side has sent so far.
pub struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    next: [u32; 2],
}

impl Flow {
    /// A connection that will open with a three-way handshake.
    pub fn new(client: SocketAddr, server: SocketAddr, client_isn: u32, server_isn: u32) -> Flow {
        Flow {
            client,
            server,
            next: [client_isn, server_isn],
        }
    }

    pub fn handshake(&mut self, cap: &mut Capture) {
        let [c, s] = self.next;
        let mut syn = TcpHeader::new(self.client.port(), self.server.port(), c, WINDOW);
        syn.syn = true;
        cap.push(true, self.client, self.server, syn, &[]);

        let mut syn_ack = TcpHeader::new(self.server.port(), self.client.port(), s, WINDOW);
        syn_ack.syn = true;
        syn_ack.ack = true;
        syn_ack.acknowledgment_number = c.wrapping_add(1);
        cap.push(false, self.server, self.client, syn_ack, &[]);

        self.next = [c.wrapping_add(1), s.wrapping_add(1)];
        self.pure_ack(cap, Dir::ToServer);
    }

    pub fn next_seq(&self, dir: Dir) -> u32 {
        self.next[dir.index()]
    }

    /// Sends `data` as one segment and advances the sender's sequence number.
    pub fn send(&mut self, cap: &mut Capture, dir: Dir, data: &[u8]) {
        let seq = self.next[dir.index()];
        self.segment(cap, dir, seq, data, false);
        self.advance(dir, data.len());
    }

    /// Sends several messages, one segment each.
    pub fn send_each(&mut self, cap: &mut Capture, dir: Dir, messages: &[&str]) {
        for m in messages {
            self.send(cap, dir, m.as_bytes());
        }
    }

    /// Sends `data` cut at the given byte offsets, in order.
    pub fn send_cut(&mut self, cap: &mut Capture, dir: Dir, data: &[u8], cuts: &[usize]) {
        let order: Vec<usize> = (0..=cuts.len()).collect();
        self.send_cut_in_order(cap, dir, data, cuts, &order);
    }

    /// Sends `data` cut at `cuts`, emitting the pieces in `order` (indexes
    /// into the pieces). The sequence numbers are those of the pieces' real
    /// places in the stream, so a receiver must reorder them.
    pub fn send_cut_in_order(
        &mut self,
        cap: &mut Capture,
        dir: Dir,
        data: &[u8],
        cuts: &[usize],
        order: &[usize],
    ) {
        let base = self.next[dir.index()];
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        for &i in order {
            let (from, to) = (bounds[i], bounds[i + 1]);
            self.segment(
                cap,
                dir,
                base.wrapping_add(from as u32),
                &data[from..to],
                false,
            );
        }
        self.advance(dir, data.len());
    }

    /// Sends bytes at an explicit sequence number without moving the stream
    /// on: retransmissions, overlaps and keep-alives.
    pub fn resend_at(&mut self, cap: &mut Capture, dir: Dir, seq: u32, data: &[u8]) {
        self.segment(cap, dir, seq, data, false);
    }

    /// Sends bytes at an explicit sequence number that run past the current
    /// end of the stream (an overlapping segment carrying old and new bytes).
    pub fn send_overlapping(&mut self, cap: &mut Capture, dir: Dir, seq: u32, data: &[u8]) {
        self.segment(cap, dir, seq, data, false);
        let end = seq.wrapping_add(data.len() as u32);
        let next = &mut self.next[dir.index()];
        assert!(
            end.wrapping_sub(*next) as i32 > 0,
            "an overlapping segment must bring new bytes"
        );
        *next = end;
    }

    pub fn pure_ack(&mut self, cap: &mut Capture, dir: Dir) {
        let seq = self.next[dir.index()];
        self.segment(cap, dir, seq, &[], false);
    }

    /// Orderly close started by `dir`'s sender: FIN, FIN back, last ACK.
    pub fn close(&mut self, cap: &mut Capture, dir: Dir) {
        let seq = self.next[dir.index()];
        self.segment(cap, dir, seq, &[], true);
        self.advance(dir, 1);

        let back = dir.other();
        let seq = self.next[back.index()];
        self.segment(cap, back, seq, &[], true);
        self.advance(back, 1);

        self.pure_ack(cap, dir);
    }

    fn advance(&mut self, dir: Dir, len: usize) {
        let next = &mut self.next[dir.index()];
        *next = next.wrapping_add(len as u32);
    }

    fn segment(&mut self, cap: &mut Capture, dir: Dir, seq: u32, data: &[u8], fin: bool) {
        let (src, dst) = match dir {
            Dir::ToServer => (self.client, self.server),
            Dir::ToClient => (self.server, self.client),
        };
        let mut h = TcpHeader::new(src.port(), dst.port(), seq, WINDOW);
        h.ack = true;
        h.acknowledgment_number = self.next[dir.other().index()];
        h.psh = !data.is_empty();
        h.fin = fin;
        cap.push(dir == Dir::ToServer, src, dst, h, data);
    }
}
