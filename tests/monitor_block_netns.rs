//! Detection and blocking together, end to end: `stratumguard monitor
//! --block BACKEND` (and `analyze --block`) runs inside the client namespace
//! of a private network (tests/netns), sees a real Stratum session to a pool
//! in the server namespace, and its firewall change stops new connections to
//! that pool while a neighbour on the same link still answers. Unblocking,
//! by `block remove` or by the entry's time to live, lets the pool back in.
//!
//! Every claim is checked on a real TCP connection from the client
//! namespace, never on an exit code alone. Needs root, as CI runs it.

mod netns;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use netns::{
    is_pool_event, json, require_root, start_monitor, Link, Proc, OK_PORT, OTHER4, OTHER6, POOL4,
    POOL6, STEP,
};
use serde_json::Value;

/// A port no list of mining ports would hold, so neither detection nor
/// blocking can come from the port number.
const STRATUM_PORT: u16 = 47123;
const HTTP_PORT: u16 = 48080;

/// How soon after the miner connects the pool must be reported confirmed.
const DETECT_WITHIN: Duration = Duration::from_secs(5);
/// How soon after a pool is reported blocked new connections must fail. The
/// blocker batches firewall updates, one a second at most.
const BLOCK_LANDS_WITHIN: Duration = Duration::from_secs(3);

/// A `mining.subscribe` that anyone can send to any address.
const FAKE_SUBSCRIBE: &str =
    "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cpuminer-opt/3.23.0\"]}\n";

fn endpoint(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Waits for the first pool event about `ip` whose confidence is
/// `confidence`, and returns it.
fn wait_for_event(monitor: &mut Proc, ip: &str, confidence: &str, within: Duration) -> Value {
    let line = monitor.stdout().wait_for(within, |l| {
        json(l).is_some_and(|v| {
            is_pool_event(&v) && v["dest_ip"] == ip && v["mining"]["confidence"] == confidence
        })
    });
    let line = line.unwrap_or_else(|| {
        panic!(
            "no {confidence} event for {ip} within {within:?}\n{}",
            monitor.transcript()
        )
    });
    json(&line).expect("the event is JSON")
}

/// Runs a miner against the pool at `ip` until the monitor reports the pool
/// confirmed; insists the report says it was blocked.
fn mine_until_confirmed_and_blocked(link: &Link, monitor: &mut Proc, ip: &str) {
    let mut cmd = link.peer_client("stratum", &endpoint(ip, STRATUM_PORT));
    cmd.args(["--run-secs", "1"]);
    let mut miner = Proc::spawn("stratum miner", cmd);
    let event = wait_for_event(monitor, ip, "confirmed", DETECT_WITHIN);
    assert_eq!(event["dest_port"], STRATUM_PORT, "{event}");
    assert_eq!(
        event["block"]["blocked"],
        true,
        "{event}\n{}\n{}",
        monitor.transcript(),
        miner.transcript()
    );
    // Its session may well be cut by the block; it has done its part.
    drop(miner);
}

/// Starts `monitor --block BACKEND` on the client's end of the link, with
/// the link's state file.
fn start_blocking_monitor(link: &Link, backend: &str, extra: &[&str]) -> Proc {
    let state = link.state();
    let mut args = vec![
        "--block",
        backend,
        "--state",
        state.to_str().expect("utf-8 temp path"),
    ];
    args.extend_from_slice(extra);
    start_monitor(&link.client, &[&link.client_if], &args)
}

fn assert_reachable(link: &Link, ips: &[&str], port: u16, when: &str) {
    for ip in ips {
        assert!(
            link.connects(ip, port),
            "{} should be reachable {when}",
            endpoint(ip, port)
        );
    }
}

/// The whole story for one backend, over IPv4 and IPv6: a pool is detected
/// and blocked by `monitor`, its neighbour is not, the block outlives the
/// monitor, and `block remove` lifts it.
fn monitor_blocks_confirmed_pools_until_removed(backend: &str) {
    if !require_root() {
        return;
    }
    let link = Link::new(&format!("mb{}", &backend[..3]));
    // A Stratum pool on every server address, on the same port: the pool
    // and its neighbour differ only by address.
    let _servers: Vec<Proc> = [POOL4, POOL6, OTHER4, OTHER6]
        .iter()
        .map(|ip| link.start_peer_server("stratum", &endpoint(ip, STRATUM_PORT)))
        .collect();
    let everyone = [POOL4, POOL6, OTHER4, OTHER6];
    assert_reachable(&link, &everyone, STRATUM_PORT, "before any block");

    let mut monitor = start_blocking_monitor(&link, backend, &["--block-ttl", "600"]);
    for ip in [POOL4, POOL6] {
        mine_until_confirmed_and_blocked(&link, &mut monitor, ip);
    }

    // New connections to the pools fail; their neighbours still answer.
    for ip in [POOL4, POOL6] {
        assert!(
            link.becomes_unreachable(ip, STRATUM_PORT, BLOCK_LANDS_WITHIN),
            "{ip} still reachable after {backend} blocked it\n{}",
            monitor.transcript()
        );
    }
    assert_reachable(&link, &[OTHER4, OTHER6], STRATUM_PORT, "beside a block");

    // Stopping the monitor keeps the blocks: they live in the firewall and
    // in the state file until they expire or are removed.
    monitor.signal("TERM");
    let status = monitor.wait(STEP);
    assert!(status.success(), "{}", monitor.transcript());
    for ip in [POOL4, POOL6] {
        assert!(
            !link.connects(ip, STRATUM_PORT),
            "{ip} reachable once the monitor stopped ({backend})"
        );
    }

    let out = link.sg_ok(&["block", "remove", POOL4, POOL6, "--backend", backend]);
    assert!(out.contains(&format!("- {POOL4}/32")), "{out}");
    assert_reachable(&link, &everyone, STRATUM_PORT, "after block remove");
    // And a whole mining session gets through again.
    link.exchange("stratum", &endpoint(POOL4, STRATUM_PORT));
    link.exchange("stratum", &endpoint(POOL6, STRATUM_PORT));
}

#[test]
fn monitor_with_nftables_blocks_a_confirmed_pool_and_not_its_neighbour_until_block_remove() {
    monitor_blocks_confirmed_pools_until_removed("nftables");
}

#[test]
fn monitor_with_ipset_blocks_a_confirmed_pool_and_not_its_neighbour_until_block_remove() {
    monitor_blocks_confirmed_pools_until_removed("ipset");
}

#[test]
fn monitor_with_iptables_blocks_a_confirmed_pool_and_not_its_neighbour_until_block_remove() {
    monitor_blocks_confirmed_pools_until_removed("iptables");
}

#[test]
fn a_pool_blocked_by_monitor_with_nftables_is_reachable_again_once_its_ttl_passes() {
    if !require_root() {
        return;
    }
    const TTL: u64 = 4;
    let link = Link::new("mbttl");
    let _pool = link.start_peer_server("stratum", &endpoint(POOL6, STRATUM_PORT));
    let ttl = TTL.to_string();
    let mut monitor = start_blocking_monitor(&link, "nftables", &["--block-ttl", &ttl]);

    let blocked_at = Instant::now();
    mine_until_confirmed_and_blocked(&link, &mut monitor, POOL6);
    assert!(
        link.becomes_unreachable(POOL6, STRATUM_PORT, BLOCK_LANDS_WITHIN),
        "the pool was never blocked\n{}",
        monitor.transcript()
    );
    assert!(
        blocked_at.elapsed() < Duration::from_secs(TTL),
        "the block check outlasted the ttl; the test cannot tell expiry apart"
    );

    // Nothing is run in between: the set element's own timeout ends it.
    let ttl = Duration::from_secs(TTL);
    assert!(
        link.becomes_reachable(POOL6, STRATUM_PORT, ttl + Duration::from_secs(3)),
        "the pool is still blocked {:?} after a {TTL} s ttl\n{}",
        blocked_at.elapsed(),
        monitor.transcript()
    );
    // Whole seconds: the entry's expiry is counted from the second it began.
    assert!(
        blocked_at.elapsed() + Duration::from_secs(1) >= ttl,
        "unblocked after {:?}, before the ttl",
        blocked_at.elapsed()
    );
}

/// The first pool endpoint in a committed capture's expected verdicts.
fn expected_pool(capture: &str) -> (String, u16) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stem = capture
        .rsplit_once('.')
        .expect("capture has an extension")
        .0;
    let tsv = root.join(format!("captures/crafted/{stem}.expected.tsv"));
    let text = std::fs::read_to_string(&tsv).expect("expected verdicts");
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{} names no pool", tsv.display()));
    let endpoint: std::net::SocketAddr = line
        .split('\t')
        .next()
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("bad endpoint in {}: {line}", tsv.display()));
    (endpoint.ip().to_string(), endpoint.port())
}

#[test]
fn analyze_with_nftables_blocks_the_pools_of_a_committed_capture() {
    if !require_root() {
        return;
    }
    let captures = ["stratum-v1-high-port.pcap", "stratum-v1-ipv6.pcapng"];
    let pools: Vec<(String, u16)> = captures.iter().map(|c| expected_pool(c)).collect();

    // The capture's pools become real hosts in the server namespace.
    let mut link = Link::new("anz");
    let mut ports = vec![OK_PORT];
    for (ip, port) in &pools {
        link.add_server_host(ip);
        ports.push(*port);
    }
    link.start_ok_server(&ports);
    for (ip, port) in &pools {
        assert_reachable(&link, &[ip], *port, "before analyze");
    }

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let paths: Vec<String> = captures
        .iter()
        .map(|c| root.join("captures/crafted").join(c).display().to_string())
        .collect();
    let mut args = vec!["analyze", "--json", "--no-progress", "--block", "nftables"];
    args.extend(paths.iter().map(String::as_str));
    let stdout = link.sg_ok(&args);

    for (ip, port) in &pools {
        let record = stdout
            .lines()
            .filter_map(json)
            .find(|v| is_pool_event(v) && v["dest_ip"] == ip.as_str())
            .unwrap_or_else(|| panic!("analyze did not report {ip}\n{stdout}"));
        assert_eq!(record["block"]["blocked"], true, "{record}");
        assert!(
            !link.connects(ip, *port),
            "{} reachable after analyze blocked it",
            endpoint(ip, *port)
        );
    }
    // The link's own servers were not in the capture and stay reachable.
    assert_reachable(&link, &[POOL4, OTHER4, POOL6, OTHER6], OK_PORT, "");
}

#[test]
fn a_fake_one_sided_subscribe_is_reported_suspected_and_its_target_stays_reachable() {
    if !require_root() {
        return;
    }
    let mut link = Link::new("fake");
    // Two servers that never answer in a mining protocol: one reads and
    // hangs up without a word, the other is a web server. And a real pool
    // beside them.
    link.start_silent_server(&[OK_PORT]);
    let _web = link.start_peer_server("http", &endpoint(OTHER6, HTTP_PORT));
    let _pool = link.start_peer_server("stratum", &endpoint(POOL4, STRATUM_PORT));
    let mut monitor = start_blocking_monitor(&link, "nftables", &[]);

    // The forged requests really went out, and what came back is no pool's.
    let victims = [(OTHER4, OK_PORT), (OTHER6, HTTP_PORT)];
    for (ip, port) in victims {
        let reply = link
            .client
            .talk(ip, port, FAKE_SUBSCRIBE)
            .unwrap_or_else(|e| panic!("cannot reach {}: {e}", endpoint(ip, port)));
        assert!(!reply.contains("result"), "{reply}");
        let event = wait_for_event(&mut monitor, ip, "suspected", DETECT_WITHIN);
        assert_eq!(event["mining"]["dialect"], "stratum-v1", "{event}");
        assert_eq!(event["block"]["blocked"], false, "{event}");
    }

    // The same monitor does block a pool that answers, so the blocker was
    // live all along.
    mine_until_confirmed_and_blocked(&link, &mut monitor, POOL4);
    assert!(
        link.becomes_unreachable(POOL4, STRATUM_PORT, BLOCK_LANDS_WITHIN),
        "the real pool was not blocked\n{}",
        monitor.transcript()
    );
    for (ip, port) in victims {
        assert_reachable(&link, &[ip], port, "after a forged subscribe");
    }

    monitor.signal("TERM");
    let status = monitor.wait(STEP);
    let transcript = monitor.transcript();
    assert!(status.success(), "{transcript}");
    for v in monitor.stdout().all().iter().filter_map(|l| json(l)) {
        if is_pool_event(&v) && (v["dest_ip"] == OTHER4 || v["dest_ip"] == OTHER6) {
            assert_eq!(v["mining"]["confidence"], "suspected", "{v}\n{transcript}");
            assert_eq!(v["block"]["blocked"], false, "{v}\n{transcript}");
        }
    }
    let list = link.sg_ok(&["block", "list"]);
    assert!(list.contains(POOL4), "{list}");
    assert!(
        !list.contains(OTHER4) && !list.contains(OTHER6),
        "a forged request reached the blocklist:\n{list}"
    );
}
