//! `stratumguard monitor` on live interfaces, end to end.
//!
//! The tests build a private network (tests/netns): a client namespace,
//! where the miner runs, and a server namespace for the pools, joined by a
//! veth pair, with the sensor capturing on the client's end. The
//! peers are the `stratum_pool` and `stratum_miner` examples, which speak
//! real Stratum v1 (and, for the negative cases, HTTP and a non-mining
//! JSON-RPC service). Nothing leaves the namespaces. They need root, as CI
//! runs them.

mod netns;

use std::process::Command;
use std::time::{Duration, Instant};

use netns::{
    is_pool_event, is_stats, json, require_root, run_bounded, start_monitor, stratumguard, Link,
    Netns, Proc, POOL4, POOL6, STEP,
};
use serde_json::Value;

/// A port no list of mining ports would hold, so detection cannot come from
/// the port number.
const STRATUM_PORT: u16 = 47123;
const HTTP_PORT: u16 = 48080;
const JSONRPC_PORT: u16 = 47124;

/// How soon after the miner connects the pool must be reported.
const DETECT_WITHIN: Duration = Duration::from_secs(5);

/// The `capture` entry of a stats object for interface `name`.
fn capture_of<'a>(stats: &'a Value, name: &str) -> Option<&'a Value> {
    stats["capture"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn stratum_pools_on_an_unusual_port_are_reported_confirmed_while_http_and_json_rpc_are_not() {
    if !require_root() {
        return;
    }
    let link = Link::new("mon");
    let pool4 = format!("{POOL4}:{STRATUM_PORT}");
    let pool6 = format!("[{POOL6}]:{STRATUM_PORT}");
    let http = format!("{POOL4}:{HTTP_PORT}");
    let rpc = format!("{POOL4}:{JSONRPC_PORT}");
    let dir = tempfile::tempdir().expect("temp dir");
    let events_path = dir.path().join("events.jsonl");
    let _pool4 = link.start_peer_server("stratum", &pool4);
    let _pool6 = link.start_peer_server("stratum", &pool6);
    let _http = link.start_peer_server("http", &http);
    let _rpc = link.start_peer_server("jsonrpc", &rpc);
    let events_arg = events_path.to_str().expect("utf-8 temp path");
    let mut monitor = start_monitor(&link.client, &[&link.client_if], &["--events", events_arg]);

    // The look-alikes go first. The engine handles packets in capture order,
    // so once the pool's detection (which comes later) is out, these flows
    // have been fully inspected too.
    link.exchange("http", &http);
    link.exchange("jsonrpc", &rpc);

    // A miner per address family: detection must follow within seconds.
    for (pool, ip) in [(&pool4, POOL4), (&pool6, POOL6)] {
        let started = Instant::now();
        let mut miner = Proc::spawn("stratum miner", {
            let mut c = link.peer_client("stratum", pool);
            c.args(["--run-secs", "2"]);
            c
        });
        let detection = monitor.stdout().wait_for(DETECT_WITHIN, |l| {
            json(l).is_some_and(|v| {
                is_pool_event(&v)
                    && v["dest_ip"] == ip
                    && v["dest_port"] == STRATUM_PORT
                    && v["mining"]["confidence"] == "confirmed"
            })
        });
        let took = started.elapsed();
        let miner_status = miner.wait(STEP);
        assert!(
            miner_status.success(),
            "the miner's session failed\n{}",
            miner.transcript()
        );
        let detection = detection.unwrap_or_else(|| {
            panic!(
                "pool {pool} not reported confirmed within {DETECT_WITHIN:?}\n{}",
                monitor.transcript()
            )
        });
        let v = json(&detection).expect("detection is JSON");
        assert_eq!(v["mining"]["dialect"], "stratum-v1", "{detection}");
        assert!(took <= DETECT_WITHIN, "detection of {pool} took {took:?}");
    }

    // A periodic stats line that counted the traffic.
    let miner_if = link.client_if.clone();
    let stats = monitor.stdout().wait_for(Duration::from_secs(3), |l| {
        json(l).is_some_and(|v| {
            is_stats(&v)
                && v["final"] == false
                && capture_of(&v, &miner_if).is_some_and(|c| c["received"].as_u64() > Some(0))
                && v["stats"]["packets"].as_u64() > Some(0)
        })
    });
    assert!(
        stats.is_some(),
        "no stats line with packets counted\n{}",
        monitor.transcript()
    );

    // SIGTERM stops it cleanly, with final stats.
    monitor.signal("TERM");
    let status = monitor.wait(STEP);
    let transcript = monitor.transcript();
    assert_eq!(status.code(), Some(0), "monitor exit status\n{transcript}");
    let stdout: Vec<Value> = monitor
        .stdout()
        .all()
        .iter()
        .filter_map(|l| json(l))
        .collect();
    let stderr = monitor.stderr().all().join("\n");

    // Every pool event is about one of the two Stratum pools; the HTTP
    // server and the JSON-RPC service were never reported, and each pool
    // reported once per kind of event (new, confirmed, details learnt later)
    // although it pushed many jobs. The worker's login reaches the output.
    let pool_events: Vec<&Value> = stdout.iter().filter(|v| is_pool_event(v)).collect();
    for ip in [POOL4, POOL6] {
        let kinds: Vec<&str> = pool_events
            .iter()
            .filter(|ev| ev["dest_ip"] == ip && ev["dest_port"] == STRATUM_PORT)
            .filter_map(|ev| ev["mining"]["event"].as_str())
            .collect();
        let mut distinct = kinds.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            !kinds.is_empty() && kinds.len() == distinct.len(),
            "events for {ip}: {kinds:?}\n{transcript}"
        );
        let logged_in = pool_events
            .iter()
            .any(|ev| ev["dest_ip"] == ip && ev["mining"]["login"].as_str().is_some());
        assert!(
            logged_in,
            "no event for {ip} carries the login\n{transcript}"
        );
    }
    for ev in &pool_events {
        let ip = ev["dest_ip"].as_str().unwrap_or_default();
        assert!(
            (ip == POOL4 || ip == POOL6) && ev["dest_port"] == STRATUM_PORT,
            "unexpected pool {ip}:{}\n{transcript}",
            ev["dest_port"]
        );
    }

    // The final stats, on stdout as JSON and on stderr as readable lines.
    let last = stdout
        .iter()
        .rev()
        .find(|v| is_stats(v))
        .expect("a stats object");
    assert_eq!(last["final"], true, "{transcript}");
    let cap = capture_of(last, &link.client_if).expect("stats for the interface");
    assert!(cap["received"].as_u64() > Some(10), "{transcript}");
    assert_eq!(cap["queue_dropped"], 0, "{transcript}");
    let periodic = format!("stratumguard: stats: {}: ", link.client_if);
    let last_line = format!("stratumguard: final stats: {}: ", link.client_if);
    assert!(
        stderr.contains(&periodic),
        "no readable stats line\n{transcript}"
    );
    assert!(
        stderr.contains(&last_line),
        "no readable final stats\n{transcript}"
    );
    assert!(stderr.contains("SIGTERM received"), "{transcript}");

    // The events file holds the detections, line for line.
    let written = std::fs::read_to_string(&events_path).expect("events file");
    let written: Vec<Value> = written
        .lines()
        .map(|l| json(l).expect("JSON line"))
        .collect();
    let printed: Vec<Value> = pool_events.into_iter().cloned().collect();
    assert_eq!(written, printed, "events file differs from stdout");
}

#[test]
fn an_interface_that_goes_down_or_disappears_is_reported_and_the_others_keep_capturing() {
    if !require_root() {
        return;
    }
    let link = Link::new("gone");
    // A second interface in the client namespace that the test can remove.
    let extra = format!("sgx{}", &link.client_if[3..]);
    let extra_peer = format!("sgy{}", &link.client_if[3..]);
    link.client.ip(&[
        "link",
        "add",
        &extra,
        "type",
        "veth",
        "peer",
        "name",
        &extra_peer,
    ]);
    link.client.ip(&["link", "set", &extra, "up"]);
    link.client.ip(&["link", "set", &extra_peer, "up"]);
    let http = format!("{POOL4}:{HTTP_PORT}");
    let _http = link.start_peer_server("http", &http);
    let mut monitor = start_monitor(&link.client, &[&link.client_if, &extra], &[]);

    // Take one interface down: libpcap says nothing, the monitor does.
    link.client.ip(&["link", "set", &extra, "down"]);
    monitor.expect_stderr(&format!("interface {extra} went down"), STEP);

    // Remove it: the loss is reported by name.
    link.client.ip(&["link", "del", &extra]);
    monitor.expect_stderr(&format!("interface {extra} stopped capturing"), STEP);

    // The other interface still captures: its count grows with new traffic.
    let (miner_if, extra_name) = (link.client_if.clone(), extra.clone());
    let before = monitor
        .stdout()
        .wait_for(STEP, |l| {
            json(l).is_some_and(|v| {
                is_stats(&v) && capture_of(&v, &extra_name).is_some_and(|c| c["running"] == false)
            })
        })
        .and_then(|l| capture_of(&json(&l)?, &miner_if)?["received"].as_u64())
        .unwrap_or_else(|| panic!("no stats after the removal\n{}", monitor.transcript()));
    link.exchange("http", &http);
    let grew = monitor.stdout().wait_for(STEP, |l| {
        json(l).is_some_and(|v| {
            is_stats(&v)
                && capture_of(&v, &miner_if).is_some_and(|c| {
                    c["running"] == true && c["received"].as_u64() >= Some(before + 6)
                })
        })
    });
    assert!(
        grew.is_some(),
        "capture on {miner_if} stopped too\n{}",
        monitor.transcript()
    );

    // With the last interface gone, the monitor ends by itself, with stats.
    link.client.ip(&["link", "del", &link.client_if]);
    let status = monitor.wait(STEP);
    let transcript = monitor.transcript();
    assert_eq!(status.code(), Some(2), "{transcript}");
    let stderr = monitor.stderr().all().join("\n");
    assert!(
        stderr.contains("every interface stopped capturing"),
        "{transcript}"
    );
    assert!(
        stderr.contains(&format!("final stats: {miner_if}: ")),
        "{transcript}"
    );
}

/// Runs `stratumguard ARGS` (in `ns` when given) and returns its exit code
/// and stderr.
fn run_monitor_expecting_failure(ns: Option<&Netns>, pre: &[&str], args: &[&str]) -> (i32, String) {
    let mut cmd = match ns {
        Some(ns) => ns.command(stratumguard()),
        None if pre.is_empty() => Command::new(stratumguard()),
        None => {
            let mut c = Command::new(pre[0]);
            c.args(&pre[1..]).arg(stratumguard());
            c
        }
    };
    cmd.arg("monitor").args(args).args(["--duration", "5"]);
    let out = run_bounded("monitor", cmd, STEP);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_one_line_error(code: i32, stderr: &str, expected: &[&str]) {
    assert_eq!(code, 2, "exit status; stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected, got:\n{stderr}"
    );
    assert!(stderr.starts_with("stratumguard: error: "), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{e:?} missing from: {stderr}");
    }
}

#[test]
fn a_missing_interface_exits_2_with_one_line_naming_it() {
    let (code, stderr) = run_monitor_expecting_failure(None, &[], &["-i", "does-not-exist"]);
    assert_one_line_error(code, &stderr, &["no such interface: does-not-exist"]);
}

#[test]
fn a_bpf_filter_that_does_not_compile_exits_2_naming_the_filter() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("bpf");
    let (code, stderr) =
        run_monitor_expecting_failure(Some(&ns), &[], &["-i", "lo", "--bpf", "tcp port"]);
    assert_one_line_error(code, &stderr, &["BPF filter \"tcp port\" does not compile"]);
}

#[test]
fn an_interface_that_is_down_exits_2_saying_to_bring_it_up() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("down");
    ns.ip(&["link", "set", "lo", "down"]);
    let (code, stderr) = run_monitor_expecting_failure(Some(&ns), &[], &["-i", "lo"]);
    assert_one_line_error(
        code,
        &stderr,
        &["interface lo is down", "ip link set lo up"],
    );
}

#[test]
fn capturing_without_cap_net_raw_exits_2_naming_the_capability() {
    if !require_root() {
        return;
    }
    // setpriv drops to an unprivileged user with no capabilities at all.
    let pre = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let (code, stderr) = run_monitor_expecting_failure(None, &pre, &["-i", "lo"]);
    assert_one_line_error(
        code,
        &stderr,
        &["no permission to capture on lo", "CAP_NET_RAW"],
    );
}
