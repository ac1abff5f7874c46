//! The firewall backends against the real kernel, inside network namespaces
//! made for each test: a blocked pool refuses new connections while another
//! server in the same namespace still answers, and unblocking (by hand or by
//! expiry) lets connections through again. Every check is on a real TCP
//! connection, not on an exit code.
//!
//! Needs root (namespaces, nft, iptables, ipset) and python3 for the tiny
//! server and client.

mod netns;

use std::time::Duration;

use netns::{require_root, Link, CLIENT4, OK_PORT, OTHER4, OTHER6, POOL4, POOL6};

/// A link with the `ok` server answering on every server address, or `None`
/// when namespace tests are skipped.
fn new_lab(prefix: &str) -> Option<Link> {
    if !require_root() {
        return None;
    }
    let mut link = Link::new(prefix);
    link.start_ok_server(&[OK_PORT]);
    Some(link)
}

fn assert_reachable(lab: &Link, addrs: &[&str], why: &str) {
    for a in addrs {
        assert!(lab.connects(a, OK_PORT), "{a} should be reachable {why}");
    }
}

fn assert_blocked(lab: &Link, addrs: &[&str], why: &str) {
    for a in addrs {
        assert!(!lab.connects(a, OK_PORT), "{a} should be blocked {why}");
    }
}

/// The common story for one backend, in IPv4 and IPv6.
fn add_blocks_the_pool_only_and_remove_unblocks_it(backend: &str) {
    let Some(lab) = new_lab(&backend[..3]) else {
        return;
    };
    assert_reachable(&lab, &[POOL4, OTHER4, POOL6, OTHER6], "before blocking");

    let out = lab.sg_ok(&["block", "add", POOL4, POOL6, "--backend", backend]);
    assert!(out.contains(&format!("+ {POOL4}/32")), "{out}");
    assert_blocked(&lab, &[POOL4, POOL6], "after block add");
    assert_reachable(&lab, &[OTHER4, OTHER6], "while only the pool is blocked");

    // Applying the same state again changes nothing.
    let again = lab.sg_ok(&["block", "apply", "--backend", backend]);
    assert_eq!(again, "", "a second apply must change nothing");
    assert_blocked(&lab, &[POOL4, POOL6], "after a second apply");

    let out = lab.sg_ok(&["block", "remove", POOL4, POOL6, "--backend", backend]);
    assert!(out.contains(&format!("- {POOL4}/32")), "{out}");
    assert_reachable(&lab, &[POOL4, OTHER4, POOL6, OTHER6], "after block remove");
}

#[test]
fn nftables_blocks_a_pool_and_not_its_neighbour_and_unblocks_it_on_remove() {
    add_blocks_the_pool_only_and_remove_unblocks_it("nftables");
}

#[test]
fn ipset_blocks_a_pool_and_not_its_neighbour_and_unblocks_it_on_remove() {
    add_blocks_the_pool_only_and_remove_unblocks_it("ipset");
}

#[test]
fn iptables_blocks_a_pool_and_not_its_neighbour_and_unblocks_it_on_remove() {
    add_blocks_the_pool_only_and_remove_unblocks_it("iptables");
}

#[test]
fn nftables_and_ipset_entries_expire_on_their_own_after_the_ttl() {
    for backend in ["nftables", "ipset"] {
        let Some(lab) = new_lab(&format!("ttl{}", &backend[..2])) else {
            return;
        };
        let added = std::time::Instant::now();
        lab.sg_ok(&[
            "block",
            "add",
            POOL4,
            POOL6,
            "--ttl",
            "4",
            "--backend",
            backend,
        ]);
        assert_blocked(
            &lab,
            &[POOL4, POOL6],
            &format!("within the ttl ({backend})"),
        );
        assert!(
            added.elapsed() < Duration::from_secs(4),
            "the checks outlasted the ttl"
        );
        // The kernel's own timer removes them; nothing is run in between.
        std::thread::sleep(Duration::from_secs(5).saturating_sub(added.elapsed()));
        assert_reachable(&lab, &[POOL4, POOL6], &format!("after the ttl ({backend})"));
    }
}

#[test]
fn iptables_entries_leave_at_the_first_apply_after_the_ttl() {
    let Some(lab) = new_lab("ttlip") else { return };
    lab.sg_ok(&["block", "add", POOL4, "--ttl", "2", "--backend", "iptables"]);
    assert_blocked(&lab, &[POOL4], "within the ttl");
    std::thread::sleep(Duration::from_millis(2500));
    let out = lab.sg_ok(&["block", "apply", "--backend", "iptables"]);
    assert!(out.contains(&format!("- {POOL4}/32")), "{out}");
    assert_reachable(&lab, &[POOL4], "after the ttl and an apply");
}

#[test]
fn flush_removes_only_what_stratumguard_created() {
    let Some(lab) = new_lab("flush") else { return };
    // Someone else's objects, which must survive.
    lab.client.exec(&["nft", "add", "table", "inet", "theirs"]);
    lab.client.exec(&[
        "iptables",
        "-w",
        "-A",
        "INPUT",
        "-s",
        "192.0.2.99",
        "-j",
        "DROP",
    ]);
    lab.client.exec(&["ipset", "create", "theirs", "hash:ip"]);

    // One state file per backend: a state file belongs to one backend.
    let with_state = |args: &[&str], backend: &str| {
        let state = lab.path(&format!("{backend}.json"));
        let mut all = args.to_vec();
        all.extend(["--backend", backend, "--state", state.to_str().unwrap()]);
        let out = lab.sg_raw(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for backend in ["nftables", "ipset", "iptables"] {
        with_state(&["block", "add", POOL4], backend);
    }
    assert_blocked(&lab, &[POOL4], "by three backends");
    for backend in ["nftables", "ipset", "iptables"] {
        with_state(&["block", "flush", "--keep-state"], backend);
    }
    assert_reachable(&lab, &[POOL4], "after flushing every backend");

    let tables = lab.client.exec(&["nft", "list", "tables"]);
    assert!(
        tables.contains("inet theirs") && !tables.contains("stratumguard"),
        "{tables}"
    );
    let sets = lab.client.exec(&["ipset", "list", "-n"]);
    assert_eq!(sets.trim(), "theirs");
    let rules = lab.client.exec(&["iptables", "-w", "-S"]);
    assert!(
        rules.contains("-A INPUT -s 192.0.2.99/32 -j DROP"),
        "{rules}"
    );
    assert!(!rules.contains("STRATUMGUARD"), "{rules}");
    // Flushing again finds nothing to do.
    assert_eq!(lab.sg_ok(&["block", "flush", "--backend", "nftables"]), "");
}

#[test]
fn a_dry_run_prints_the_exact_transaction_and_changes_nothing() {
    let Some(lab) = new_lab("dry") else { return };
    let out = lab.sg_ok(&["block", "add", POOL4, "--backend", "nftables", "--dry-run"]);
    assert!(out.contains(&format!("+ {POOL4}/32")), "{out}");
    assert!(out.contains("nft -j -f -"), "{out}");
    assert!(
        out.contains(&format!("\"val\":\"{POOL4}\"")) || out.contains(&format!("\"{POOL4}\"")),
        "{out}"
    );
    assert_reachable(&lab, &[POOL4], "after a dry run");
    assert!(!lab.state().exists(), "a dry run must not write the state");
    assert!(!lab
        .client
        .exec(&["nft", "list", "tables"])
        .contains("stratumguard"));

    // The printed transaction is what a real run applies: feeding it to nft
    // by hand blocks the pool.
    let json = out
        .split("<<'EOF'\n")
        .nth(1)
        .unwrap()
        .split("\nEOF")
        .next()
        .unwrap();
    let file = lab.path("tx.json");
    std::fs::write(&file, json).unwrap();
    lab.client
        .exec(&["nft", "-j", "-f", file.to_str().unwrap()]);
    assert_blocked(&lab, &[POOL4], "after applying the printed transaction");

    let ipset = lab.sg_ok(&["block", "add", POOL6, "--backend", "ipset", "--dry-run"]);
    assert!(
        ipset.contains(&format!("add stratumguard-ip6 {POOL6} timeout 0")),
        "{ipset}"
    );
    assert!(
        ipset.contains("-A STRATUMGUARD-IPSET -m set --match-set stratumguard-ip6 dst -j DROP"),
        "{ipset}"
    );
}

#[test]
fn a_malformed_state_file_is_reported_by_line_and_the_last_good_blocks_stay() {
    let Some(lab) = new_lab("bad") else { return };
    lab.sg_ok(&["block", "add", POOL4, "--backend", "nftables"]);
    assert_blocked(&lab, &[POOL4], "after block add");

    // A hand edit gone wrong: a missing comma after `dropped_over_cap`, which
    // the parser notices on the line after it.
    let good = std::fs::read_to_string(lab.state()).unwrap();
    let bad = good.replacen("\"dropped_over_cap\": 0,", "\"dropped_over_cap\": 0", 1);
    assert_ne!(good, bad);
    let edited = 1 + good
        .lines()
        .position(|l| l.contains("dropped_over_cap"))
        .unwrap();
    std::fs::write(lab.state(), &bad).unwrap();

    let out = lab.sg(&["block", "apply", "--backend", "nftables"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("state.json") && err.contains(&format!("line {}", edited + 1)),
        "{err}"
    );
    assert_blocked(&lab, &[POOL4], "while the state file is broken");
    assert_reachable(&lab, &[OTHER4], "while the state file is broken");
}

#[test]
fn a_flood_over_the_cap_keeps_the_kernel_set_at_the_cap_and_counts_drops() {
    let Some(lab) = new_lab("cap") else { return };
    // Three hundred detected pools in the state, the pool seen last of all.
    let mut entries = Vec::new();
    for i in 0..300u32 {
        let ip = std::net::Ipv4Addr::from(0xcb00_7100 + i); // 203.0.113.0 and on
        entries.push(serde_json::json!({
            "net": format!("{ip}/32"), "source": "detected", "dialect": "stratum-v1",
            "confidence": "confirmed", "added": 1000 + i, "renewed": 1000 + i, "expires": null,
        }));
    }
    entries.push(serde_json::json!({
        "net": format!("{POOL4}/32"), "source": "detected", "dialect": "stratum-v1",
        "confidence": "confirmed", "added": 5000, "renewed": 5000, "expires": null,
    }));
    let state = serde_json::json!({ "version": 1, "entries": entries });
    std::fs::write(lab.state(), serde_json::to_string_pretty(&state).unwrap()).unwrap();

    lab.sg_ok(&[
        "block",
        "apply",
        "--backend",
        "nftables",
        "--block-max",
        "100",
    ]);
    let set = lab
        .client
        .exec(&["nft", "-j", "list", "set", "inet", "stratumguard", "addr4"]);
    let v: serde_json::Value = serde_json::from_str(&set).unwrap();
    let s = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("set"))
        .unwrap();
    assert_eq!(s["elem"].as_array().unwrap().len(), 100);
    assert_eq!(s["size"], 100);
    let list = lab.sg_ok(&["block", "list"]);
    assert!(list.contains("dropped over the cap: 201"), "{list}");
    assert_blocked(
        &lab,
        &[POOL4],
        "the most recently seen pool survives the cap",
    );
}

#[test]
fn the_policy_refuses_to_block_shared_infrastructure_and_the_hosts_own_address() {
    let Some(lab) = new_lab("pol") else { return };
    let out = lab.sg(&["block", "add", "104.16.1.1", "--backend", "nftables"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("shared infrastructure: Cloudflare"),
        "{err}"
    );
    let out = lab.sg(&["block", "add", CLIENT4, "--backend", "nftables"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("own addresses"),
        "{err}"
    );
    let out = lab.sg(&[
        "block",
        "add",
        POOL4,
        "--allow",
        "10.77.0.0/24",
        "--backend",
        "nftables",
    ]);
    assert!(!out.status.success());
    assert_reachable(&lab, &[POOL4], "after refused adds");
}

#[test]
fn blocked_ports_stop_connections_to_any_address_on_that_port() {
    for backend in ["nftables", "ipset", "iptables"] {
        let Some(lab) = new_lab(&format!("port{}", &backend[..2])) else {
            return;
        };
        lab.sg_ok(&["block", "add", "3333", "--backend", backend]);
        assert_blocked(
            &lab,
            &[POOL4, OTHER4, POOL6, OTHER6],
            &format!("port 3333 via {backend}"),
        );
        lab.sg_ok(&["block", "remove", "3333", "--backend", backend]);
        assert_reachable(
            &lab,
            &[POOL4, OTHER6],
            &format!("port 3333 unblocked via {backend}"),
        );
    }
}
