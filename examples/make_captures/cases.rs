//! The crafted cases: one capture each, with the verdict it must produce.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::capture_file::Format;
use super::messages::{cryptonote, eth, v1, Filler};
use super::tcp_flow::{Capture, Dir, Flow, Link};

use Dir::{ToClient, ToServer};

/// One line of an expected-verdict file.
pub struct Expect {
    pub server: SocketAddr,
    pub dialect: &'static str,
    pub confidence: &'static str,
}

pub struct Crafted {
    pub name: &'static str,
    pub format: Format,
    /// What the capture holds and why it gets its verdict; becomes the
    /// `#` header of the expected file.
    pub about: &'static str,
    pub expect: Vec<Expect>,
    pub capture: Capture,
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn confirmed(server: SocketAddr, dialect: &'static str) -> Vec<Expect> {
    vec![Expect {
        server,
        dialect,
        confidence: "confirmed",
    }]
}

fn suspected(server: SocketAddr, dialect: &'static str) -> Vec<Expect> {
    vec![Expect {
        server,
        dialect,
        confidence: "suspected",
    }]
}

/// Every case, in the order the files are written.
pub fn all() -> Vec<Crafted> {
    vec![
        stratum_v1_on_port("stratum-v1-high-port", Format::Pcap, 17_029, V1_HIGH_PORT),
        stratum_v1_on_port("stratum-v1-port-80", Format::Pcap, 80, V1_PORT_80),
        stratum_v1_on_port("stratum-v1-port-443", Format::Pcap, 443, V1_PORT_443),
        stratum_v1_on_port("stratum-v1-port-25", Format::Pcap, 25, V1_PORT_25),
        split_subscribe_three_segments(),
        split_subscribe_unanswered(),
        out_of_order_first_request(),
        retransmissions_overlaps_keepalives(),
        midstream_no_syn(),
        midstream_starts_mid_line(),
        stratum_v1_ipv6(),
        stratum_v1_on_link(
            "stratum-v1-vlan",
            Link::Vlan(100),
            v4(192, 0, 2, 31, 3333),
            VLAN,
        ),
        stratum_v1_on_link(
            "stratum-v1-qinq",
            Link::QinQ(200, 100),
            v4(192, 0, 2, 32, 3333),
            QINQ,
        ),
        stratum_v1_on_link(
            "stratum-v1-linux-sll",
            Link::LinuxSll,
            v4(192, 0, 2, 33, 3333),
            SLL,
        ),
        stratum_v1_on_link(
            "stratum-v1-linux-sll2",
            Link::LinuxSll2,
            v4(192, 0, 2, 34, 3333),
            SLL2,
        ),
        stratum_v1_on_link(
            "stratum-v1-raw-ip",
            Link::RawIp,
            v4(198, 51, 100, 77, 4444),
            RAW_IP,
        ),
        stratum_v1_on_link(
            "stratum-v1-bsd-loopback",
            Link::BsdLoopback,
            v4(127, 0, 0, 1, 3333),
            LOOPBACK,
        ),
        stratum_v1_version_rolling(),
        cryptonote_xmrig(),
        eth_proxy(),
        ethereum_stratum_ethminer(),
        ethereum_stratum_nicehash(),
        getwork_http_bitcoin(),
        getwork_http_ethereum(),
        case_and_order_tolerant_subscribe(),
        suspected_subscribe_server_closes(),
        clean_jsonrpc_echo(),
        clean_electrum(),
        clean_bitcoind_getblocktemplate(),
        clean_geth_block_number(),
        clean_http_docs_quoting_subscribe(),
        clean_http_get_url_with_subscribe(),
        clean_tls_client_hello(),
        clean_language_server(),
    ]
}

const MINER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 10, 23)), 0);

fn miner(port: u16) -> SocketAddr {
    SocketAddr::new(MINER.ip(), port)
}

const WORKER: &str = "sgtest.rig01";
const CGMINER: &str = "cgminer/4.10.0";

/// The ordinary cgminer session: subscribe, authorize, difficulty and a job
/// pushed by the pool, one share submitted and accepted, then the miner hangs up.
fn v1_session(cap: &mut Capture, flow: &mut Flow, f: &mut Filler) {
    flow.handshake(cap);
    flow.send(cap, ToServer, v1::subscribe(1, CGMINER).as_bytes());
    flow.send(cap, ToClient, v1::subscribe_result(f, 1).as_bytes());
    flow.send(cap, ToServer, v1::authorize(2, WORKER).as_bytes());

    // Pools often put the answer and the first job in one segment.
    let push = [
        v1::result_true(2),
        v1::set_difficulty(1024),
        v1::notify(f, "4f1a", "65f2bd10", true),
    ]
    .concat();
    flow.send(cap, ToClient, push.as_bytes());

    cap.wait_ms(1_800);
    flow.send(
        cap,
        ToServer,
        v1::submit(f, 3, WORKER, "4f1a", "65f2bd10").as_bytes(),
    );
    flow.send(cap, ToClient, v1::result_true(3).as_bytes());
    cap.wait_ms(400);
    flow.close(cap, ToServer);
}

const V1_HIGH_PORT: &str = "\
Plaintext Stratum v1 from cgminer/4.10.0 to a pool on high port 17029: handshake,
mining.subscribe, mining.authorize, set_difficulty and notify pushed by the pool,
one mining.submit accepted, FIN. The pool answers the requests and pushes work,
so it is confirmed.";

const V1_PORT_80: &str = "\
The ordinary cgminer Stratum v1 session, but on TCP port 80. No HTTP at all: the
port proves nothing, the newline-delimited JSON-RPC does. Confirmed (the pool
answers and pushes mining.notify).";

const V1_PORT_443: &str = "\
The ordinary cgminer Stratum v1 session in plaintext on TCP port 443, a port
usually taken to be TLS. Confirmed (answers and mining.notify from the pool).";

const V1_PORT_25: &str = "\
The ordinary cgminer Stratum v1 session on TCP port 25 (SMTP's port), as in the
sMaSheD scans where most pools sat on port 25. Confirmed.";

fn stratum_v1_on_port(
    name: &'static str,
    format: Format,
    port: u16,
    about: &'static str,
) -> Crafted {
    let server = v4(203, 0, 113, 10, port);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(u64::from(port));
    let mut flow = Flow::new(miner(49_732), server, 0x1c2d_3e4f, 0x8a9b_0c1d);
    v1_session(&mut cap, &mut flow, &mut f);
    Crafted {
        name,
        format,
        about,
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

const VLAN: &str = "\
The ordinary cgminer Stratum v1 session inside 802.1Q VLAN 100 Ethernet frames.
Confirmed.";
const QINQ: &str = "\
The ordinary cgminer Stratum v1 session in QinQ frames: an 802.1ad outer tag
(VLAN 200) around an 802.1Q inner tag (VLAN 100). Confirmed.";
const SLL: &str = "\
The ordinary cgminer Stratum v1 session captured on Linux's `any` device with
the cooked v1 header (LINKTYPE_LINUX_SLL, 113). Confirmed.";
const SLL2: &str = "\
The ordinary cgminer Stratum v1 session with the Linux cooked v2 header
(LINKTYPE_LINUX_SLL2, 276), in a pcapng file. Confirmed.";
const RAW_IP: &str = "\
The ordinary cgminer Stratum v1 session as bare IPv4 packets with no link
header (LINKTYPE_RAW, 101), as captured on a tun/VPN interface. Confirmed.";
const LOOPBACK: &str = "\
The ordinary cgminer Stratum v1 session over BSD loopback (LINKTYPE_NULL, 0,
4-byte little-endian address family): a miner talking to a local Stratum proxy
on 127.0.0.1:3333. The proxy answers and pushes work: confirmed.";

fn stratum_v1_on_link(
    name: &'static str,
    link: Link,
    server: SocketAddr,
    about: &'static str,
) -> Crafted {
    let format = if matches!(link, Link::LinuxSll2) {
        Format::Pcapng
    } else {
        Format::Pcap
    };
    let client = if server.ip().is_loopback() {
        SocketAddr::new(server.ip(), 50_114)
    } else {
        miner(50_114)
    };
    let mut cap = Capture::new(link);
    let mut f = Filler::new(u64::from(link.linktype()) + 7);
    let mut flow = Flow::new(client, server, 0x0bad_cafe, 0x5eed_f00d);
    v1_session(&mut cap, &mut flow, &mut f);
    Crafted {
        name,
        format,
        about,
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn stratum_v1_ipv6() -> Crafted {
    let client = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x25)),
        51_200,
    );
    let server = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x5, 0, 0, 0, 0, 0x10)),
        3333,
    );
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(6);
    let mut flow = Flow::new(client, server, 0x7000_0001, 0x9000_0001);
    v1_session(&mut cap, &mut flow, &mut f);
    Crafted {
        name: "stratum-v1-ipv6",
        format: Format::Pcapng,
        about: "\
The ordinary cgminer Stratum v1 session over IPv6 on Ethernet, in a pcapng file.
The pool endpoint is written in brackets. Confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

/// Byte offsets cutting `text` in three inside its method name.
fn cuts_inside(text: &str, method: &str) -> [usize; 2] {
    let at = text.find(method).expect("the method is in the message");
    [at + 4, at + 13]
}

fn split_subscribe_three_segments() -> Crafted {
    let server = v4(203, 0, 113, 21, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(21);
    let mut flow = Flow::new(miner(49_801), server, 0x2200_0000, 0x4400_0000);
    flow.handshake(&mut cap);

    let subscribe = v1::subscribe(1, CGMINER);
    let cuts = cuts_inside(&subscribe, "mining.subscribe");
    flow.send_cut(&mut cap, ToServer, subscribe.as_bytes(), &cuts);
    flow.send(
        &mut cap,
        ToClient,
        v1::subscribe_result(&mut f, 1).as_bytes(),
    );
    flow.send(&mut cap, ToServer, v1::authorize(2, WORKER).as_bytes());
    flow.send(&mut cap, ToClient, v1::result_true(2).as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "split-subscribe-three-segments",
        format: Format::Pcap,
        about: "\
mining.subscribe cut into three TCP segments inside the method name
(`\"mini` | `ng.subscr` | `ibe\"...`), then the pool's subscribe result, an
authorize and its `true`. The pool pushes no notify: the verdict rests on
reassembling the request and pairing the pool's non-null result with it.
Confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn split_subscribe_unanswered() -> Crafted {
    let server = v4(203, 0, 113, 22, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(miner(49_802), server, 0x2300_0000, 0x4500_0000);
    flow.handshake(&mut cap);
    let subscribe = v1::subscribe(1, CGMINER);
    let cuts = cuts_inside(&subscribe, "mining.subscribe");
    flow.send_cut(&mut cap, ToServer, subscribe.as_bytes(), &cuts);
    flow.pure_ack(&mut cap, ToClient);
    cap.wait_ms(30_000);
    flow.close(&mut cap, ToClient);
    Crafted {
        name: "split-subscribe-unanswered",
        format: Format::Pcap,
        about: "\
mining.subscribe cut into three segments inside the method name; the server
acknowledges it, says nothing for 30 s and closes. Only the client's request
was seen, and only after reassembly: suspected.",
        expect: suspected(server, "stratum-v1"),
        capture: cap,
    }
}

fn out_of_order_first_request() -> Crafted {
    let server = v4(203, 0, 113, 23, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(23);
    let mut flow = Flow::new(miner(49_803), server, 0x2400_0000, 0x4600_0000);
    flow.handshake(&mut cap);

    let subscribe = v1::subscribe(1, CGMINER);
    let cuts = cuts_inside(&subscribe, "mining.subscribe");
    flow.send_cut_in_order(&mut cap, ToServer, subscribe.as_bytes(), &cuts, &[2, 1, 0]);
    flow.send(
        &mut cap,
        ToClient,
        v1::subscribe_result(&mut f, 1).as_bytes(),
    );
    flow.send(&mut cap, ToServer, v1::authorize(2, WORKER).as_bytes());
    flow.send(&mut cap, ToClient, v1::result_true(2).as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "out-of-order-first-request",
        format: Format::Pcap,
        about: "\
The first request, mining.subscribe, arrives in three segments sent last part
first (third, second, first), each with its true sequence number. Then the
pool's subscribe result, authorize and `true`; no notify. A reassembler that
takes bytes in arrival order sees garbage. Confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn retransmissions_overlaps_keepalives() -> Crafted {
    let server = v4(203, 0, 113, 24, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(24);
    let mut flow = Flow::new(miner(49_804), server, 0x2500_0000, 0x4700_0000);
    flow.handshake(&mut cap);

    // The subscribe, then the same segment again after a lost ACK.
    let subscribe = v1::subscribe(1, CGMINER);
    let seq = flow.next_seq(ToServer);
    flow.send(&mut cap, ToServer, subscribe.as_bytes());
    cap.wait_ms(200);
    flow.resend_at(&mut cap, ToServer, seq, subscribe.as_bytes());

    // The pool's answer, retransmitted too.
    let answer = v1::subscribe_result(&mut f, 1);
    let seq = flow.next_seq(ToClient);
    flow.send(&mut cap, ToClient, answer.as_bytes());
    flow.resend_at(&mut cap, ToClient, seq, answer.as_bytes());

    // The authorize: its first 30 bytes, then a segment repeating bytes
    // 10..30 and carrying the rest.
    let authorize = v1::authorize(2, WORKER);
    let seq = flow.next_seq(ToServer);
    flow.send(&mut cap, ToServer, &authorize.as_bytes()[..30]);
    flow.send_overlapping(&mut cap, ToServer, seq + 10, &authorize.as_bytes()[10..]);

    let push = [
        v1::result_true(2),
        v1::set_difficulty(2048),
        v1::notify(&mut f, "77c0", "65f2bd4c", true),
    ]
    .concat();
    flow.send(&mut cap, ToClient, push.as_bytes());

    // Keep-alives from both sides: one byte, the last `\n` already delivered.
    cap.wait_ms(45_000);
    let last = flow.next_seq(ToServer) - 1;
    flow.resend_at(&mut cap, ToServer, last, b"\n");
    flow.pure_ack(&mut cap, ToClient);
    let last = flow.next_seq(ToClient) - 1;
    flow.resend_at(&mut cap, ToClient, last, b"\n");
    flow.pure_ack(&mut cap, ToServer);

    flow.send(
        &mut cap,
        ToServer,
        v1::submit(&mut f, 3, WORKER, "77c0", "65f2bd4c").as_bytes(),
    );
    flow.send(&mut cap, ToClient, v1::result_true(3).as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "retransmissions-overlaps-keepalive",
        format: Format::Pcap,
        about: "\
A Stratum v1 session with TCP repeats: the subscribe and the pool's answer are
each retransmitted whole; the authorize comes as 30 bytes then an overlapping
segment that repeats bytes 10..30 and carries the rest; both sides send a
1-byte keep-alive that re-sends the last `\\n` already delivered. Then submit and
`true`. Repeated bytes must be delivered once. Confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn midstream_no_syn() -> Crafted {
    let server = v4(203, 0, 113, 25, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(25);
    let mut flow = Flow::new(miner(49_805), server, 0x3a1f_0042, 0x91c0_7710);

    flow.send(
        &mut cap,
        ToClient,
        v1::notify(&mut f, "5a01", "65f2c001", false).as_bytes(),
    );
    cap.wait_ms(900);
    flow.send(
        &mut cap,
        ToServer,
        v1::submit(&mut f, 41, WORKER, "5a01", "65f2c001").as_bytes(),
    );
    flow.send(&mut cap, ToClient, v1::result_true(41).as_bytes());
    cap.wait_ms(5_000);
    flow.send(
        &mut cap,
        ToClient,
        v1::notify(&mut f, "5a02", "65f2c01f", true).as_bytes(),
    );
    flow.send(
        &mut cap,
        ToServer,
        v1::submit(&mut f, 42, WORKER, "5a02", "65f2c01f").as_bytes(),
    );
    flow.send(&mut cap, ToClient, v1::result_true(42).as_bytes());
    flow.pure_ack(&mut cap, ToServer);
    Crafted {
        name: "midstream-no-syn",
        format: Format::Pcap,
        about: "\
Capture started long after the handshake: no SYN, no subscribe, no authorize.
The pool pushes mining.notify, the miner submits, the pool accepts; twice. The
connection is still open when the capture ends. The pushed notify confirms it.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn midstream_starts_mid_line() -> Crafted {
    let server = v4(203, 0, 113, 26, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(26);
    let mut flow = Flow::new(miner(49_806), server, 0x0fed_cba9, 0x7654_3210);

    // The first segment seen from each side starts inside a line.
    let old_notify = v1::notify(&mut f, "6b10", "65f2c100", false);
    let tail = &old_notify[old_notify.len() - 150..];
    let first = [tail, &v1::result_true(60)].concat();
    flow.send(&mut cap, ToClient, first.as_bytes());

    let old_submit = v1::submit(&mut f, 61, WORKER, "6b10", "65f2c100");
    let tail = &old_submit[old_submit.len() - 60..];
    let first = [tail, &v1::submit(&mut f, 62, WORKER, "6b10", "65f2c100")].concat();
    flow.send(&mut cap, ToServer, first.as_bytes());

    flow.send(
        &mut cap,
        ToClient,
        [v1::result_true(61), v1::result_true(62)]
            .concat()
            .as_bytes(),
    );
    cap.wait_ms(3_000);
    flow.send(
        &mut cap,
        ToClient,
        v1::notify(&mut f, "6b11", "65f2c13c", true).as_bytes(),
    );
    flow.send(
        &mut cap,
        ToServer,
        v1::submit(&mut f, 63, WORKER, "6b11", "65f2c13c").as_bytes(),
    );
    flow.send(&mut cap, ToClient, v1::result_true(63).as_bytes());
    Crafted {
        name: "midstream-starts-mid-line",
        format: Format::Pcap,
        about: "\
Mid-stream with no SYN, and the first segment from each side starts in the
middle of a line: the pool's begins with the last 150 bytes of a mining.notify,
the miner's with the last 60 bytes of a mining.submit. Both are followed by
whole lines; a parser must drop the partial line and resync at the next `\\n`.
Later whole lines hold a pushed mining.notify and accepted submits: confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn stratum_v1_version_rolling() -> Crafted {
    let server = v4(203, 0, 113, 27, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(27);
    let mut flow = Flow::new(miner(49_807), server, 0x2800_0000, 0x4a00_0000);
    flow.handshake(&mut cap);
    flow.send_each(&mut cap, ToServer, &[
        "{\"id\":1,\"method\":\"mining.configure\",\"params\":[[\"version-rolling\"],{\"version-rolling.mask\":\"1fffe000\",\"version-rolling.min-bit-count\":2}]}\n",
    ]);
    flow.send_each(&mut cap, ToClient, &[
        "{\"id\":1,\"result\":{\"version-rolling\":true,\"version-rolling.mask\":\"1fffe000\"},\"error\":null}\n",
    ]);
    flow.send(
        &mut cap,
        ToServer,
        v1::subscribe(2, "bmminer/2.0.0").as_bytes(),
    );
    flow.send(
        &mut cap,
        ToClient,
        v1::subscribe_result(&mut f, 2).as_bytes(),
    );
    flow.send(&mut cap, ToServer, v1::authorize(3, "sgtest.s9").as_bytes());
    let push = [
        v1::result_true(3),
        v1::set_difficulty(65_536),
        v1::notify(&mut f, "a0", "65f2c200", true),
    ]
    .concat();
    flow.send(&mut cap, ToClient, push.as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "stratum-v1-version-rolling",
        format: Format::Pcap,
        about: "\
An ASIC (bmminer/2.0.0) that opens with mining.configure asking for version
rolling (ASICBoost), then subscribe and authorize; the pool grants the mask,
answers, and pushes difficulty and a job. Confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn cryptonote_xmrig() -> Crafted {
    let server = v4(198, 51, 100, 23, 10_128);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(128);
    let mut flow = Flow::new(miner(41_936), server, 0x6a00_1000, 0x6b00_2000);
    let wallet = cryptonote::wallet(&mut f);
    let session = format!("{}-{}", f.hex(8), f.hex(4));
    let seed = f.hex(64);

    flow.handshake(&mut cap);
    flow.send(&mut cap, ToServer, cryptonote::login(1, &wallet).as_bytes());
    flow.send(
        &mut cap,
        ToClient,
        cryptonote::login_result(&mut f, 1, &session, "1001", &seed).as_bytes(),
    );
    cap.wait_ms(2_500);
    flow.send(
        &mut cap,
        ToServer,
        cryptonote::submit(&mut f, 2, &session, "1001").as_bytes(),
    );
    flow.send(&mut cap, ToClient, cryptonote::status(2, "OK").as_bytes());
    flow.send(
        &mut cap,
        ToClient,
        cryptonote::job(&mut f, "1002", &seed).as_bytes(),
    );
    cap.wait_ms(60_000);
    flow.send(
        &mut cap,
        ToServer,
        cryptonote::keepalived(3, &session).as_bytes(),
    );
    flow.send(
        &mut cap,
        ToClient,
        cryptonote::status(3, "KEEPALIVED").as_bytes(),
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "cryptonote-xmrig",
        format: Format::Pcap,
        about: "\
XMRig 6.21.0 mining Monero (RandomX, \"algo\":[\"rx/0\"]) in the CryptoNote pool
dialect: login with a wallet and agent, the pool's result carrying the first
job, a submit answered OK, a job pushed by the pool, a keepalived answered
KEEPALIVED, FIN. Confirmed.",
        expect: confirmed(server, "cryptonote"),
        capture: cap,
    }
}

fn eth_proxy() -> Crafted {
    let server = v4(198, 51, 100, 61, 8008);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(8008);
    let mut flow = Flow::new(miner(52_001), server, 0x1357_9bdf, 0x2468_ace0);
    let login = format!("[\"{}.rig7\", \"x\"]", eth::address(&mut f));

    flow.handshake(&mut cap);
    flow.send(
        &mut cap,
        ToServer,
        eth::proxy_request(2, "eth1.0", "eth_submitLogin", &login).as_bytes(),
    );
    flow.send(&mut cap, ToClient, eth::proxy_result(2, "true").as_bytes());
    flow.send(
        &mut cap,
        ToServer,
        eth::proxy_request(3, "", "eth_getWork", "[]").as_bytes(),
    );
    flow.send(
        &mut cap,
        ToClient,
        eth::proxy_result(3, &eth::work(&mut f)).as_bytes(),
    );
    let hashrate = format!("[\"0x0000000001c9c380\", \"0x{}\"]", f.hex(64));
    flow.send(
        &mut cap,
        ToServer,
        eth::proxy_request(6, "", "eth_submitHashrate", &hashrate).as_bytes(),
    );
    flow.send(&mut cap, ToClient, eth::proxy_result(6, "true").as_bytes());
    cap.wait_ms(4_000);
    flow.send(
        &mut cap,
        ToClient,
        eth::proxy_result(0, &eth::work(&mut f)).as_bytes(),
    );
    let share = format!(
        "[\"0x{}\", \"0x{}\", \"0x{}\"]",
        f.hex(16),
        f.hex(64),
        f.hex(64)
    );
    flow.send(
        &mut cap,
        ToServer,
        eth::proxy_request(4, "", "eth_submitWork", &share).as_bytes(),
    );
    flow.send(&mut cap, ToClient, eth::proxy_result(4, "true").as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "eth-proxy",
        format: Format::Pcap,
        about: "\
Ethereum mining in the eth-proxy dialect over raw TCP (as Claymore/ethminer
spoke to nanopool): eth_submitLogin, eth_getWork, eth_submitHashrate, new work
pushed by the pool with id 0, eth_submitWork; the pool answers every request.
Confirmed.",
        expect: confirmed(server, "eth-proxy"),
        capture: cap,
    }
}

fn ethereum_stratum_ethminer() -> Crafted {
    let server = v4(198, 51, 100, 80, 4444);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(4444);
    let mut flow = Flow::new(miner(52_144), server, 0x0eee_0001, 0x0fff_0001);
    let worker = format!("{}.rig3", eth::address(&mut f));

    flow.handshake(&mut cap);
    flow.send(
        &mut cap,
        ToServer,
        eth::nh_subscribe(1, "ethminer/0.19").as_bytes(),
    );
    flow.send(
        &mut cap,
        ToClient,
        eth::nh_subscribe_result(&mut f, 1, "080c").as_bytes(),
    );
    flow.send_each(
        &mut cap,
        ToServer,
        &["{\"id\": 2, \"method\": \"mining.extranonce.subscribe\", \"params\": []}\n"],
    );
    flow.send(&mut cap, ToClient, v1::result_true(2).as_bytes());
    flow.send(&mut cap, ToServer, v1::authorize(3, &worker).as_bytes());
    let push = [
        v1::result_true(3),
        "{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[0.5]}\n".to_string(),
        eth::nh_notify(&mut f, "bf0488aa"),
    ]
    .concat();
    flow.send(&mut cap, ToClient, push.as_bytes());
    cap.wait_ms(3_000);
    let submit = format!(
        "{{\"id\": 4, \"method\": \"mining.submit\", \"params\": [\"{worker}\", \"bf0488aa\", \"{}\"]}}\n",
        f.hex(12)
    );
    flow.send(&mut cap, ToServer, submit.as_bytes());
    flow.send(&mut cap, ToClient, v1::result_true(4).as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "ethereum-stratum-ethminer",
        format: Format::Pcap,
        about: "\
ethminer 0.19 in the EthereumStratum/1.0.0 dialect: mining.subscribe with
params [\"ethminer/0.19\", \"EthereumStratum/1.0.0\"], mining.extranonce.subscribe,
mining.authorize, then set_difficulty and a 4-field mining.notify pushed by the
pool, and one submit accepted. Confirmed.",
        expect: confirmed(server, "ethereum-stratum"),
        capture: cap,
    }
}

fn ethereum_stratum_nicehash() -> Crafted {
    let server = v4(198, 51, 100, 90, 3353);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(3353);
    let mut flow = Flow::new(miner(52_353), server, 0x3353_0000, 0x5333_0000);
    let worker = format!("3{}.rig1", f.base58(33));

    flow.handshake(&mut cap);
    flow.send(
        &mut cap,
        ToServer,
        eth::nh_subscribe(1, "NiceHash/1.0.0").as_bytes(),
    );
    flow.send(
        &mut cap,
        ToClient,
        eth::nh_subscribe_result(&mut f, 1, "a8f3").as_bytes(),
    );
    flow.send(&mut cap, ToServer, v1::authorize(2, &worker).as_bytes());
    let push = [
        v1::result_true(2),
        "{\"id\":null,\"method\":\"mining.set_extranonce\",\"params\":[\"a8f31c\"]}\n".to_string(),
        "{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[2.0]}\n".to_string(),
        eth::nh_notify(&mut f, "0000000022f2c0b3"),
    ]
    .concat();
    flow.send(&mut cap, ToClient, push.as_bytes());
    cap.wait_ms(7_000);
    let submit = format!(
        "{{\"id\": 3, \"method\": \"mining.submit\", \"params\": [\"{worker}\", \"0000000022f2c0b3\", \"{}\"]}}\n",
        f.hex(10)
    );
    flow.send(&mut cap, ToServer, submit.as_bytes());
    flow.send(&mut cap, ToClient, v1::result_true(3).as_bytes());
    flow.close(&mut cap, ToClient);
    Crafted {
        name: "ethereum-stratum-nicehash",
        format: Format::Pcapng,
        about: "\
NiceHash's flavour of EthereumStratum/1.0.0 (daggerhashimoto, port 3353): the
subscribe names \"NiceHash/1.0.0\" and the protocol, the worker is a BTC-style
address, and the pool pushes mining.set_extranonce, a fractional
mining.set_difficulty and mining.notify before a share is accepted; the pool
closes. pcapng. Confirmed.",
        expect: confirmed(server, "ethereum-stratum"),
        capture: cap,
    }
}

/// An HTTP/1.1 request with a JSON body.
fn http_post(path: &str, host: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn http_response(extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nDate: Thu, 14 Mar 2024 09:00:05 GMT\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn getwork_http_bitcoin() -> Crafted {
    let server = v4(198, 51, 100, 45, 9332);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(9332);
    let mut flow = Flow::new(miner(53_011), server, 0x4711_0000, 0x0815_0000);
    let headers = "Authorization: Basic c2d0ZXN0LnJpZzAxOng=\r\nAccept: */*\r\nContent-Type: application/json\r\n\
X-Mining-Extensions: longpoll midstate rollntime submitold\r\nUser-Agent: cgminer 4.10.0\r\n";

    flow.handshake(&mut cap);
    let ask = "{\"method\": \"getwork\", \"params\": [], \"id\":0}";
    flow.send(
        &mut cap,
        ToServer,
        http_post("/", "198.51.100.45:9332", headers, ask).as_bytes(),
    );
    let data = format!("00000002{}000000800000000000000000000000000000000000000000000000000000000000000000000000000000000080020000", f.hex(152));
    let work = format!(
        "{{\"result\":{{\"midstate\":\"{}\",\"data\":\"{data}\",\"hash1\":\"00000000000000000000000000000000000000000000000000000000000000000000008000000000000000000000000000000000000000000000000000010000\",\"target\":\"0000000000000000000000000000000000000000000000000000ffff00000000\"}},\"error\":null,\"id\":0}}",
        f.hex(64)
    );
    let reply_headers =
        "Content-Type: application/json\r\nX-Long-Polling: /LP\r\nX-Roll-NTime: Y\r\n";
    flow.send(
        &mut cap,
        ToClient,
        http_response(reply_headers, &work).as_bytes(),
    );
    cap.wait_ms(2_000);
    let share = format!("{{\"method\": \"getwork\", \"params\": [\"{data}\"], \"id\":1}}");
    flow.send(
        &mut cap,
        ToServer,
        http_post("/", "198.51.100.45:9332", headers, &share).as_bytes(),
    );
    let ok = "{\"result\":true,\"error\":null,\"id\":1}";
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\n", ok).as_bytes(),
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "getwork-http-bitcoin",
        format: Format::Pcap,
        about: "\
Old-style Bitcoin mining over HTTP: cgminer POSTs a JSON-RPC getwork with an
X-Mining-Extensions header, the pool returns midstate/data/hash1/target (with
X-Long-Polling and X-Roll-NTime), then cgminer submits the solved data with a
second getwork and the pool returns true. Confirmed.",
        expect: confirmed(server, "getwork-http"),
        capture: cap,
    }
}

fn getwork_http_ethereum() -> Crafted {
    let server = v4(198, 51, 100, 46, 8888);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(8888);
    let mut flow = Flow::new(miner(53_012), server, 0x4712_0000, 0x0816_0000);
    let path = format!("/{}/rig2", eth::address(&mut f));
    let headers = "Accept: */*\r\nContent-Type: application/json\r\n";

    flow.handshake(&mut cap);
    let ask = "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"eth_getWork\",\"params\":[]}";
    flow.send(
        &mut cap,
        ToServer,
        http_post(&path, "198.51.100.46:8888", headers, ask).as_bytes(),
    );
    let work = format!(
        "{{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{}}}",
        eth::work(&mut f)
    );
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\n", &work).as_bytes(),
    );
    let rate = format!(
        "{{\"id\":2,\"jsonrpc\":\"2.0\",\"method\":\"eth_submitHashrate\",\"params\":[\"0x1c9c380\",\"0x{}\"]}}",
        f.hex(64)
    );
    flow.send(
        &mut cap,
        ToServer,
        http_post(&path, "198.51.100.46:8888", headers, &rate).as_bytes(),
    );
    let ok = "{\"id\":2,\"jsonrpc\":\"2.0\",\"result\":true}";
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\n", ok).as_bytes(),
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "getwork-http-ethereum",
        format: Format::Pcap,
        about: "\
ethminer in farm mode against a pool over HTTP: POST /<address>/rig2 with
JSON-RPC eth_getWork (the pool returns the three work hashes) and
eth_submitHashrate (the pool returns true). Mining over HTTP: confirmed.",
        expect: confirmed(server, "getwork-http"),
        capture: cap,
    }
}

fn case_and_order_tolerant_subscribe() -> Crafted {
    let server = v4(192, 0, 2, 140, 7777);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(7777);
    let mut flow = Flow::new(miner(54_777), server, 0x7777_0000, 0x7778_0000);
    flow.handshake(&mut cap);
    flow.send_each(
        &mut cap,
        ToServer,
        &["{ \"params\" : [ ] ,  \"id\" : 1 ,\t\"method\" : \"Mining.Subscribe\" }\n"],
    );
    let answer = format!(
        "{{\"id\":1,\"result\":[[[\"mining.notify\",\"{}\"]],\"{}\",4],\"error\":null}}\n",
        f.hex(16),
        f.hex(8)
    );
    flow.send(&mut cap, ToClient, answer.as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "case-and-order-tolerant-subscribe",
        format: Format::Pcap,
        about: "\
A subscribe written unusually: `{ \"params\" : [ ] ,  \"id\" : 1 ,<TAB>\"method\" :
\"Mining.Subscribe\" }`: method name in mixed case, method last, spaces and a
tab between tokens. The pool answers with a subscribe result (non-null) and no
notify. Still a mining request answered by the pool: confirmed.",
        expect: confirmed(server, "stratum-v1"),
        capture: cap,
    }
}

fn suspected_subscribe_server_closes() -> Crafted {
    let server = v4(192, 0, 2, 150, 3333);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(miner(54_150), server, 0x1500_0000, 0x1501_0000);
    flow.handshake(&mut cap);
    flow.send(&mut cap, ToServer, v1::subscribe(1, CGMINER).as_bytes());
    flow.pure_ack(&mut cap, ToClient);
    cap.wait_ms(100);
    flow.close(&mut cap, ToClient);
    Crafted {
        name: "suspected-subscribe-server-closes",
        format: Format::Pcap,
        about: "\
cgminer sends mining.subscribe; the server acknowledges it at TCP level, sends
no data and closes. Only the client's request was seen: suspected.",
        expect: suspected(server, "stratum-v1"),
        capture: cap,
    }
}

fn clean_jsonrpc_echo() -> Crafted {
    let server = v4(192, 168, 10, 5, 8080);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(miner(55_080), server, 0x0800_0000, 0x0801_0000);
    flow.handshake(&mut cap);
    for (id, text) in [(1, "hello"), (2, "subscribe me"), (3, "bye")] {
        let ask = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[\"{text}\"],\"id\":{id}}}\n"
        );
        let back = format!("{{\"jsonrpc\":\"2.0\",\"result\":[\"{text}\"],\"id\":{id}}}\n");
        flow.send(&mut cap, ToServer, ask.as_bytes());
        flow.send(&mut cap, ToClient, back.as_bytes());
    }
    flow.send_each(
        &mut cap,
        ToServer,
        &["{\"jsonrpc\":\"2.0\",\"method\":\"notify\",\"params\":{\"event\":\"done\"}}\n"],
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-jsonrpc-echo",
        format: Format::Pcap,
        about: "\
Plain JSON-RPC 2.0 over raw TCP, newline-delimited exactly like Stratum: three
`echo` calls with results, and a notification whose method is `notify`. Same
framing, no mining method: must not be reported.",
        expect: vec![],
        capture: cap,
    }
}

fn clean_electrum() -> Crafted {
    let server = v4(192, 0, 2, 200, 50_001);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(50_001);
    let mut flow = Flow::new(miner(55_001), server, 0x5000_1000, 0x5000_2000);
    flow.handshake(&mut cap);
    flow.send_each(&mut cap, ToServer, &[
        "{\"jsonrpc\": \"2.0\", \"method\": \"server.version\", \"params\": [\"electrum/4.5.5\", \"1.4\"], \"id\": 0}\n",
    ]);
    flow.send_each(
        &mut cap,
        ToClient,
        &["{\"jsonrpc\": \"2.0\", \"result\": [\"ElectrumX 1.16.0\", \"1.4\"], \"id\": 0}\n"],
    );
    flow.send_each(&mut cap, ToServer, &[
        "{\"jsonrpc\": \"2.0\", \"method\": \"blockchain.headers.subscribe\", \"params\": [], \"id\": 1}\n",
    ]);
    let header = format!("{{\"jsonrpc\": \"2.0\", \"result\": {{\"hex\": \"{}\", \"height\": 834512}}, \"id\": 1}}\n", f.hex(160));
    flow.send(&mut cap, ToClient, header.as_bytes());
    let script = format!(
        "{{\"jsonrpc\": \"2.0\", \"method\": \"blockchain.scripthash.subscribe\", \"params\": [\"{}\"], \"id\": 2}}\n",
        f.hex(64)
    );
    flow.send(&mut cap, ToServer, script.as_bytes());
    flow.send_each(
        &mut cap,
        ToClient,
        &["{\"jsonrpc\": \"2.0\", \"result\": null, \"id\": 2}\n"],
    );
    flow.send_each(
        &mut cap,
        ToServer,
        &["{\"jsonrpc\": \"2.0\", \"method\": \"server.ping\", \"params\": [], \"id\": 3}\n"],
    );
    flow.send_each(
        &mut cap,
        ToClient,
        &["{\"jsonrpc\": \"2.0\", \"result\": null, \"id\": 3}\n"],
    );
    cap.wait_ms(9_000);
    let pushed = format!(
        "{{\"jsonrpc\": \"2.0\", \"method\": \"blockchain.headers.subscribe\", \"params\": [{{\"hex\": \"{}\", \"height\": 834513}}]}}\n",
        f.hex(160)
    );
    flow.send(&mut cap, ToClient, pushed.as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-electrum",
        format: Format::Pcap,
        about: "\
An Electrum wallet talking to an ElectrumX server over raw TCP (port 50001):
newline-delimited JSON-RPC with server.version, blockchain.headers.subscribe,
blockchain.scripthash.subscribe, server.ping, and a header notification pushed
by the server. Subscribe-and-notify like Stratum, but a wallet: must not be
reported.",
        expect: vec![],
        capture: cap,
    }
}

fn clean_bitcoind_getblocktemplate() -> Crafted {
    let server = v4(192, 168, 10, 2, 8332);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(8332);
    let mut flow = Flow::new(miner(55_332), server, 0x8332_0000, 0x8333_0000);
    let headers = "Connection: close\r\nAuthorization: Basic X19jb29raWVfXzpjMmY0ZGU=\r\n";
    flow.handshake(&mut cap);
    let ask = "{\"method\":\"getblocktemplate\",\"params\":[{\"rules\":[\"segwit\"]}],\"id\":1}\n";
    flow.send(
        &mut cap,
        ToServer,
        http_post("/", "127.0.0.1", headers, ask).as_bytes(),
    );
    let template = format!(
        "{{\"result\":{{\"capabilities\":[\"proposal\"],\"version\":536870912,\"rules\":[\"csv\",\"!segwit\",\"taproot\"],\"vbavailable\":{{}},\"vbrequired\":0,\"previousblockhash\":\"00000000000000000002{}\",\"transactions\":[],\"coinbaseaux\":{{}},\"coinbasevalue\":625000000,\"longpollid\":\"{}1\",\"target\":\"0000000000000000000342190000000000000000000000000000000000000000\",\"mintime\":1710405012,\"mutable\":[\"time\",\"transactions\",\"prevblock\"],\"noncerange\":\"00000000ffffffff\",\"sigoplimit\":80000,\"sizelimit\":4000000,\"weightlimit\":4000000,\"curtime\":1710406805,\"bits\":\"17034219\",\"height\":834513,\"default_witness_commitment\":\"6a24aa21a9ed{}\"}},\"error\":null,\"id\":1}}\n",
        f.hex(44),
        f.hex(64),
        f.hex(64)
    );
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\n", &template).as_bytes(),
    );
    flow.close(&mut cap, ToClient);

    let mut second = Flow::new(miner(55_334), server, 0x8334_0000, 0x8335_0000);
    second.handshake(&mut cap);
    let ask = "{\"method\":\"getblockchaininfo\",\"params\":[],\"id\":1}\n";
    second.send(
        &mut cap,
        ToServer,
        http_post("/", "127.0.0.1", headers, ask).as_bytes(),
    );
    let info = format!(
        "{{\"result\":{{\"chain\":\"main\",\"blocks\":834512,\"headers\":834512,\"bestblockhash\":\"00000000000000000002{}\",\"difficulty\":83148355189239.77,\"initialblockdownload\":false,\"warnings\":\"\"}},\"error\":null,\"id\":1}}\n",
        f.hex(44)
    );
    second.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\n", &info).as_bytes(),
    );
    second.close(&mut cap, ToClient);
    Crafted {
        name: "clean-bitcoind-getblocktemplate",
        format: Format::Pcap,
        about: "\
A node operator's bitcoin-cli asking bitcoind over JSON-RPC/HTTP (port 8332)
for getblocktemplate, then getblockchaininfo, each on its own connection. There
is no X-Mining-Extensions header: this is a node's own RPC, as a pool uses to
talk to its daemon, not a miner talking to a pool. Must not be reported.",
        expect: vec![],
        capture: cap,
    }
}

fn clean_geth_block_number() -> Crafted {
    let server = v4(192, 168, 10, 3, 8545);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(miner(55_545), server, 0x8545_0000, 0x8546_0000);
    let headers = "User-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Type: application/json\r\n";
    flow.handshake(&mut cap);
    let ask = "{\"jsonrpc\":\"2.0\",\"method\":\"eth_blockNumber\",\"params\":[],\"id\":83}";
    flow.send(
        &mut cap,
        ToServer,
        http_post("/", "192.168.10.3:8545", headers, ask).as_bytes(),
    );
    let back = "{\"jsonrpc\":\"2.0\",\"id\":83,\"result\":\"0x12a05f2\"}\n";
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\nVary: Origin\r\n", back).as_bytes(),
    );
    let ask = "{\"jsonrpc\":\"2.0\",\"method\":\"eth_getBalance\",\"params\":[\"0x407d73d8a49eeb85d32cf465507dd71d507100c1\",\"latest\"],\"id\":84}";
    flow.send(
        &mut cap,
        ToServer,
        http_post("/", "192.168.10.3:8545", headers, ask).as_bytes(),
    );
    let back = "{\"jsonrpc\":\"2.0\",\"id\":84,\"result\":\"0x0234c8a3397aab58\"}\n";
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: application/json\r\nVary: Origin\r\n", back).as_bytes(),
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-geth-eth-blocknumber",
        format: Format::Pcap,
        about: "\
curl asking a geth node over JSON-RPC/HTTP (port 8545) for eth_blockNumber and
eth_getBalance. Same transport as Ethereum HTTP getwork but no mining method:
must not be reported.",
        expect: vec![],
        capture: cap,
    }
}

fn clean_http_docs_quoting_subscribe() -> Crafted {
    let server = v4(192, 0, 2, 80, 80);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(miner(56_080), server, 0x0080_0000, 0x0081_0000);
    flow.handshake(&mut cap);
    let get = "GET /docs/stratum.html HTTP/1.1\r\nHost: docs.example.org\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0\r\nAccept: text/html\r\n\r\n";
    flow.send(&mut cap, ToServer, get.as_bytes());
    let page = "<!DOCTYPE html>\n<html><head><title>Stratum protocol notes</title></head>\n<body>\n\
<h1>Connecting a miner</h1>\n<p>The miner opens a TCP connection and sends one JSON object per line.\n\
First it subscribes:</p>\n<pre>\n\
{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cgminer/4.10.0\"]}\n\
</pre>\n<p>The pool answers with the subscription details and extranonce1:</p>\n<pre>\n\
{\"id\": 1, \"result\": [[[\"mining.notify\", \"ae6812eb4cd7735a\"]], \"08000002\", 4], \"error\": null}\n\
</pre>\n<p>Then it sends work with <code>mining.notify</code>:</p>\n<pre>\n\
{\"id\": null, \"method\": \"mining.notify\", \"params\": [\"bf\", \"4d16b6f8\", \"01000000\", \"0a\", [], \"20000000\", \"1a0fffff\", \"65f2bd10\", true]}\n\
</pre>\n</body></html>\n";
    let headers = "Server: nginx\r\nContent-Type: text/html; charset=utf-8\r\n";
    flow.send(&mut cap, ToClient, http_response(headers, page).as_bytes());
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-http-docs-quoting-subscribe",
        format: Format::Pcap,
        about: "\
A browser fetching an HTML page of protocol documentation over HTTP on port 80.
The body quotes a mining.subscribe request, a subscribe result and a
mining.notify, each on a line of its own inside <pre>. It is a web page inside
an HTTP response, not a Stratum session: must not be reported.",
        expect: vec![],
        capture: cap,
    }
}

fn clean_http_get_url_with_subscribe() -> Crafted {
    let server = v4(192, 0, 2, 81, 80);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(miner(56_081), server, 0x0082_0000, 0x0083_0000);
    flow.handshake(&mut cap);
    let get = "GET /search?q=%7B%22method%22%3A%22mining.subscribe%22%7D&src=mining.subscribe HTTP/1.1\r\nHost: search.example.org\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    flow.send(&mut cap, ToServer, get.as_bytes());
    let page = "<html><body><p>No results for mining.subscribe.</p></body></html>\n";
    flow.send(
        &mut cap,
        ToClient,
        http_response("Content-Type: text/html\r\n", page).as_bytes(),
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-http-get-url-with-subscribe",
        format: Format::Pcap,
        about: "\
An HTTP GET whose URL carries mining.subscribe (plain and percent-encoded in
the query string), answered by a small HTML page that repeats the word. A
search, not a miner: must not be reported.",
        expect: vec![],
        capture: cap,
    }
}

/// `n` filler bytes (from the hex filler, so the sequence stays fixed).
fn hex_bytes(f: &mut Filler, n: usize) -> Vec<u8> {
    let h = f.hex(n * 2);
    (0..n)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("filler is hex"))
        .collect()
}

/// A TLS 1.3 ClientHello record with an SNI, built field by field.
fn client_hello(f: &mut Filler, sni: &str) -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }
    fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend(with_len16(body));
        v
    }

    let mut sni_entry = vec![0u8];
    sni_entry.extend(with_len16(sni.as_bytes()));
    let mut exts = ext(0x0000, &with_len16(&sni_entry));
    exts.extend(ext(
        0x000a,
        &with_len16(&[0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]),
    ));
    exts.extend(ext(
        0x000d,
        &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03]),
    ));
    exts.extend(ext(
        0x0010,
        &with_len16(&[
            0x02, b'h', b'2', 0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ]),
    ));
    exts.extend(ext(0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]));
    let mut share = vec![0x00, 0x1d, 0x00, 0x20];
    share.extend(hex_bytes(f, 32));
    exts.extend(ext(0x0033, &with_len16(&share)));

    let mut hello = vec![0x03, 0x03];
    hello.extend(hex_bytes(f, 32));
    hello.push(32);
    hello.extend(hex_bytes(f, 32));
    hello.extend(with_len16(&[
        0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f,
    ]));
    hello.extend([0x01, 0x00]);
    hello.extend(with_len16(&exts));

    let mut handshake = vec![0x01];
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

fn clean_tls_client_hello() -> Crafted {
    let server = v4(192, 0, 2, 43, 443);
    let mut cap = Capture::new(Link::Ethernet);
    let mut f = Filler::new(443);
    let mut flow = Flow::new(miner(56_443), server, 0x0443_0000, 0x0444_0000);
    flow.handshake(&mut cap);
    flow.send(
        &mut cap,
        ToServer,
        &client_hello(&mut f, "docs.example.org"),
    );

    // ServerHello (TLS 1.3, X25519 key share), ChangeCipherSpec, then one
    // encrypted record: opaque from here on.
    let mut hello = vec![0x03, 0x03];
    hello.extend(hex_bytes(&mut f, 32));
    hello.push(32);
    hello.extend(hex_bytes(&mut f, 32));
    hello.extend([0x13, 0x01, 0x00]);
    let mut key_share = vec![0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
    key_share.extend(hex_bytes(&mut f, 32));
    let exts = [vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04], key_share].concat();
    hello.extend((exts.len() as u16).to_be_bytes());
    hello.extend(exts);
    let mut answer = vec![0x16, 0x03, 0x03];
    answer.extend(((hello.len() + 4) as u16).to_be_bytes());
    answer.extend([0x02, 0x00]);
    answer.extend((hello.len() as u16).to_be_bytes());
    answer.extend(hello);
    answer.extend([
        0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03, 0x00, 0x40,
    ]);
    answer.extend(hex_bytes(&mut f, 64));
    flow.send(&mut cap, ToClient, &answer);
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-tls-client-hello",
        format: Format::Pcap,
        about: "\
A TLS 1.3 handshake on port 443: a ClientHello with SNI docs.example.org, and
the server's ServerHello, ChangeCipherSpec and one encrypted record. Nothing in
plaintext JSON: must not be reported.",
        expect: vec![],
        capture: cap,
    }
}

fn lsp_message(body: &str) -> String {
    format!("Content-Length: {}\r\n\r\n{body}", body.len())
}

fn clean_language_server() -> Crafted {
    let server = v4(127, 0, 0, 1, 2087);
    let client = v4(127, 0, 0, 1, 57_210);
    let mut cap = Capture::new(Link::Ethernet);
    let mut flow = Flow::new(client, server, 0x2087_0000, 0x2088_0000);
    flow.handshake(&mut cap);
    let init = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"processId\":4242,\"rootUri\":\"file:///home/dev/miner\",\"capabilities\":{}}}";
    flow.send(&mut cap, ToServer, lsp_message(init).as_bytes());
    let caps = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"capabilities\":{\"textDocumentSync\":1,\"hoverProvider\":true},\"serverInfo\":{\"name\":\"pylsp\",\"version\":\"1.10.0\"}}}";
    flow.send(&mut cap, ToClient, lsp_message(caps).as_bytes());
    flow.send(
        &mut cap,
        ToServer,
        lsp_message("{\"jsonrpc\":\"2.0\",\"method\":\"initialized\",\"params\":{}}").as_bytes(),
    );
    let open = "{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didOpen\",\"params\":{\"textDocument\":{\"uri\":\"file:///home/dev/miner/client.py\",\"languageId\":\"python\",\"version\":1,\"text\":\"import json\\n\\ndef subscribe(sock):\\n    req = {\\\"id\\\": 1, \\\"method\\\": \\\"mining.subscribe\\\", \\\"params\\\": [\\\"cgminer/4.10.0\\\"]}\\n    sock.sendall(json.dumps(req).encode() + b\\\"\\\\n\\\")\\n\"}}}";
    flow.send(&mut cap, ToServer, lsp_message(open).as_bytes());
    let diag = "{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/publishDiagnostics\",\"params\":{\"uri\":\"file:///home/dev/miner/client.py\",\"diagnostics\":[]}}";
    flow.send(&mut cap, ToClient, lsp_message(diag).as_bytes());
    let hover = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"textDocument/hover\",\"params\":{\"textDocument\":{\"uri\":\"file:///home/dev/miner/client.py\"},\"position\":{\"line\":3,\"character\":30}}}";
    flow.send(&mut cap, ToServer, lsp_message(hover).as_bytes());
    flow.send(
        &mut cap,
        ToClient,
        lsp_message("{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":null}").as_bytes(),
    );
    flow.close(&mut cap, ToServer);
    Crafted {
        name: "clean-language-server",
        format: Format::Pcap,
        about: "\
An editor talking to a Python language server over TCP on 127.0.0.1:2087:
JSON-RPC 2.0 framed by Content-Length headers (initialize, initialized,
didOpen, publishDiagnostics, hover). The opened file is a miner's source whose
text contains a mining.subscribe request as an escaped JSON string. Editing
mining code is not mining: must not be reported.",
        expect: vec![],
        capture: cap,
    }
}
