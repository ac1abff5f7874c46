//! Runs `stratumguard analyze --json` over every capture under `captures/`
//! and checks the pools reported against the expected verdicts beside each
//! file; then over the real captures in the shared folder that may not be
//! redistributed, checked against their endpoint lists.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{analyze, captures_under, check_committed_capture, repo_root, Verdict};

/// One test per committed capture, named for what it shows. The list must
/// name every capture under `captures/`; a test below checks that.
macro_rules! committed_captures {
    ($($test:ident => $path:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_committed_capture($path);
            }
        )*

        const LISTED: &[&str] = &[$($path),*];
    };
}

committed_captures! {
    stratum_v1_on_a_high_port_is_confirmed => "crafted/stratum-v1-high-port.pcap",
    stratum_v1_on_port_80_is_confirmed => "crafted/stratum-v1-port-80.pcap",
    stratum_v1_in_plaintext_on_port_443_is_confirmed => "crafted/stratum-v1-port-443.pcap",
    stratum_v1_on_port_25_is_confirmed => "crafted/stratum-v1-port-25.pcap",
    subscribe_split_inside_the_method_name_is_reassembled => "crafted/split-subscribe-three-segments.pcap",
    split_subscribe_without_an_answer_is_suspected => "crafted/split-subscribe-unanswered.pcap",
    first_request_sent_last_part_first_is_reordered => "crafted/out-of-order-first-request.pcap",
    retransmissions_overlaps_and_keepalives_do_not_hide_a_pool => "crafted/retransmissions-overlaps-keepalive.pcap",
    a_session_seen_without_its_handshake_is_confirmed => "crafted/midstream-no-syn.pcap",
    a_capture_starting_mid_line_resyncs_at_the_next_newline => "crafted/midstream-starts-mid-line.pcap",
    stratum_v1_over_ipv6_is_confirmed => "crafted/stratum-v1-ipv6.pcapng",
    stratum_v1_in_vlan_frames_is_confirmed => "crafted/stratum-v1-vlan.pcap",
    stratum_v1_in_qinq_frames_is_confirmed => "crafted/stratum-v1-qinq.pcap",
    stratum_v1_in_linux_cooked_v1_is_confirmed => "crafted/stratum-v1-linux-sll.pcap",
    stratum_v1_in_linux_cooked_v2_is_confirmed => "crafted/stratum-v1-linux-sll2.pcapng",
    stratum_v1_as_raw_ip_is_confirmed => "crafted/stratum-v1-raw-ip.pcap",
    stratum_v1_over_bsd_loopback_is_confirmed => "crafted/stratum-v1-bsd-loopback.pcap",
    stratum_v1_with_version_rolling_is_confirmed => "crafted/stratum-v1-version-rolling.pcap",
    xmrig_cryptonote_session_is_confirmed => "crafted/cryptonote-xmrig.pcap",
    eth_proxy_session_is_confirmed => "crafted/eth-proxy.pcap",
    ethminer_ethereum_stratum_is_confirmed => "crafted/ethereum-stratum-ethminer.pcap",
    nicehash_ethereum_stratum_is_confirmed => "crafted/ethereum-stratum-nicehash.pcapng",
    bitcoin_getwork_over_http_is_confirmed => "crafted/getwork-http-bitcoin.pcap",
    ethereum_getwork_over_http_is_confirmed => "crafted/getwork-http-ethereum.pcap",
    mixed_case_reordered_subscribe_is_still_detected => "crafted/case-and-order-tolerant-subscribe.pcap",
    subscribe_closed_without_an_answer_is_only_suspected => "crafted/suspected-subscribe-server-closes.pcap",
    bitcoind_getblocktemplate_without_mining_extensions_is_clean => "crafted/clean-bitcoind-getblocktemplate.pcap",
    electrum_wallet_subscriptions_are_clean => "crafted/clean-electrum.pcap",
    geth_block_number_over_http_is_clean => "crafted/clean-geth-eth-blocknumber.pcap",
    web_page_quoting_mining_subscribe_is_clean => "crafted/clean-http-docs-quoting-subscribe.pcap",
    http_get_with_mining_subscribe_in_the_url_is_clean => "crafted/clean-http-get-url-with-subscribe.pcap",
    plain_json_rpc_echo_over_tcp_is_clean => "crafted/clean-jsonrpc-echo.pcap",
    language_server_editing_miner_code_is_clean => "crafted/clean-language-server.pcap",
    tls_handshake_is_clean => "crafted/clean-tls-client-hello.pcap",
    ndpi_mining_trace_reports_its_four_pools => "public/ndpi-mining-multi.pcapng",
    bitminter_stratum_and_getwork_are_both_reported => "public/zeekcm-bitcoin-mining.pcap",
    supportxmr_stratum_beside_tls_is_reported_alone => "public/zeekcm-coinhive-stratum.pcap",
    browser_mining_inside_tls_reports_nothing => "public/zeekcm-coinhive-browser-tls.pcap",
    coiniumserv_mini_reports_the_pool_not_the_coin_daemon => "public/coiniumserv-litecoin-testnet-mini.pcapng",
    coiniumserv_reports_the_pool_not_the_coin_daemon => "public/coiniumserv-litecoin-testnet.pcapng",
    bitcoin_peer_to_peer_is_clean => "public/clean-ndpi-bitcoin-p2p.pcap",
    ethereum_devp2p_is_clean => "public/clean-ndpi-ethereum-devp2p.pcap",
    ndpi_json_rpc_trace_is_clean => "public/clean-ndpi-jsonrpc.pcap",
    geth_client_version_over_http_is_clean => "public/clean-peafowl-ethereum-jsonrpc-http.pcap",
    everyday_lan_traffic_is_clean => "public/clean-ndpi-1kxun-mixed.pcap",
    ipv6_browsing_is_clean => "public/clean-ndpi-http-ipv6.pcap",
}

#[test]
fn every_committed_capture_has_a_test_and_an_expected_file() {
    let root = repo_root().join("captures");
    let found: BTreeSet<String> = captures_under(&root)
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .expect("under captures/")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    let listed: BTreeSet<String> = LISTED.iter().map(|s| s.to_string()).collect();

    let untested: Vec<&String> = found.difference(&listed).collect();
    let vanished: Vec<&String> = listed.difference(&found).collect();
    assert!(
        untested.is_empty(),
        "captures with no test in tests/captures.rs: {untested:?}"
    );
    assert!(
        vanished.is_empty(),
        "tests naming captures that do not exist: {vanished:?}"
    );
    for rel in &found {
        let expected = common::expected_path(&root.join(rel));
        assert!(
            expected.is_file(),
            "{rel} has no expected verdicts at {}",
            expected.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Shared real captures that may not be redistributed.

/// Where the shared captures live: `$STRATUMGUARD_SHARED_CAPTURES`, else
/// `<repo>/../shared/captures/public` (CI keeps a copy of shared/ beside the
/// clone).
fn shared_dir() -> PathBuf {
    match std::env::var_os("STRATUMGUARD_SHARED_CAPTURES") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("../shared/captures/public"),
    }
}

/// The rule one row of a shared endpoint list sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evidence {
    /// The server answered in the protocol: must be reported, confirmed.
    ServerReplied,
    /// Only the client's request was seen: may be reported, and if so only
    /// as suspected.
    ClientRequestOnly,
}

/// Maps a `kind` column of the shared lists to our dialect name. `Ok(None)`
/// is a coin node's RPC, which is not a pool; anything unknown is an error so
/// a new kind cannot slip through unchecked.
fn dialect_of(kind: &str) -> Result<Option<&'static str>, String> {
    match kind {
        "stratum-v1(mining.*)" => Ok(Some("stratum-v1")),
        "stratum-eth-proxy" => Ok(Some("eth-proxy")),
        "stratum-cryptonote(xmr)" => Ok(Some("cryptonote")),
        "btc-getwork/gbt-http" | "eth-getwork-http" => Ok(Some("getwork-http")),
        k if k.starts_with("node-rpc") => Ok(None),
        k => Err(format!("unknown kind {k:?}")),
    }
}

/// What an endpoint list allows: per (endpoint, dialect) whether it must be
/// confirmed, plus the node-RPC endpoints that must never be reported.
#[derive(Default)]
struct EndpointRules {
    pools: BTreeMap<(SocketAddr, &'static str), Evidence>,
    node_rpc: BTreeSet<SocketAddr>,
}

fn read_endpoint_rules(path: &Path) -> Result<EndpointRules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rules = EndpointRules::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 3 {
            return Err(format!("{}: too few fields in {line:?}", at()));
        }
        let endpoint: SocketAddr = fields[0]
            .parse()
            .map_err(|e| format!("{}: bad endpoint: {e}", at()))?;
        let evidence = match fields[2] {
            "server-replied" => Evidence::ServerReplied,
            "client-request-only" => Evidence::ClientRequestOnly,
            other => return Err(format!("{}: unknown evidence {other:?}", at())),
        };
        match dialect_of(fields[1]).map_err(|e| format!("{}: {e}", at()))? {
            None => {
                rules.node_rpc.insert(endpoint);
            }
            Some(dialect) => {
                // Two kinds can map to one dialect; the stronger evidence wins.
                let slot = rules.pools.entry((endpoint, dialect)).or_insert(evidence);
                if evidence == Evidence::ServerReplied {
                    *slot = Evidence::ServerReplied;
                }
            }
        }
    }
    Ok(rules)
}

/// Checks one analysis against an endpoint list; returns every breach.
fn breaches(rules: &EndpointRules, reported: &BTreeSet<Verdict>) -> Vec<String> {
    let mut out = Vec::new();
    let mining_endpoints: BTreeSet<SocketAddr> = rules.pools.keys().map(|(ep, _)| *ep).collect();
    for v in reported {
        if rules.node_rpc.contains(&v.endpoint) && !mining_endpoints.contains(&v.endpoint) {
            out.push(format!(
                "reported a coin node's RPC endpoint as a pool: {v}"
            ));
            continue;
        }
        let known = rules
            .pools
            .iter()
            .find(|((ep, d), _)| *ep == v.endpoint && *d == v.dialect);
        match known {
            None => out.push(format!("reported but not listed: {v}")),
            Some((_, Evidence::ServerReplied)) if v.confidence != "confirmed" => {
                out.push(format!("server replied, so must be confirmed: {v}"))
            }
            Some((_, Evidence::ClientRequestOnly)) if v.confidence != "suspected" => out.push(
                format!("only the client's request was seen, so must be suspected: {v}"),
            ),
            Some(_) => {}
        }
    }
    for ((ep, dialect), evidence) in &rules.pools {
        let seen = reported
            .iter()
            .any(|v| v.endpoint == *ep && v.dialect == *dialect);
        if *evidence == Evidence::ServerReplied && !seen {
            out.push(format!(
                "missing: {ep}\t{dialect}\tconfirmed (the server replied)"
            ));
        }
    }
    out
}

/// Captures in the shared folder that are also committed under
/// `captures/public` are checked by the exact tests above; here only the rest.
fn shared_only_captures(dir: &Path) -> Vec<PathBuf> {
    let committed = repo_root().join("captures/public");
    captures_under(dir)
        .into_iter()
        .filter(|p| p.parent() == Some(dir))
        .filter(|p| !committed.join(p.file_name().expect("file name")).exists())
        .collect()
}

#[test]
fn unlicensed_shared_captures_match_their_endpoint_lists() {
    let dir = shared_dir();
    if !dir.is_dir() {
        if std::env::var_os("STRATUMGUARD_SKIP_SHARED").is_some_and(|v| v == "1") {
            // Straight to the stderr handle: the test harness captures
            // `eprintln!` of passing tests, and this notice must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! NOTICE: STRATUMGUARD_SKIP_SHARED=1: the shared real captures at {} were NOT checked. !!!\n",
                dir.display()
            );
            return;
        }
        panic!(
            "shared captures not found at {} (looked for $STRATUMGUARD_SHARED_CAPTURES, else \
             <repo>/../shared/captures/public). Put a copy of shared/ beside the clone, point \
             STRATUMGUARD_SHARED_CAPTURES at it, or set STRATUMGUARD_SKIP_SHARED=1 to skip on purpose.",
            dir.display()
        );
    }

    let captures = shared_only_captures(&dir);
    assert!(
        !captures.is_empty(),
        "no shared-only captures found in {}",
        dir.display()
    );

    let mut failures = Vec::new();
    for capture in &captures {
        let name = capture
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let list = dir.join("expected").join(format!("{name}.endpoints.tsv"));

        // No list means a clean capture: nothing may be reported.
        let rules = if list.is_file() {
            match read_endpoint_rules(&list) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            }
        } else {
            EndpointRules::default()
        };

        let analysis = analyze(&[capture]);
        let reported = match analysis.pool_set() {
            Ok(r) => r,
            Err(repeated) => {
                failures.push(format!(
                    "{name}: pools reported more than once:\n{repeated}\n{}",
                    analysis.context()
                ));
                continue;
            }
        };
        let mut problems = breaches(&rules, &reported);
        if !analysis.garbage.is_empty() || analysis.status.code() != Some(0) {
            problems.push(format!(
                "unexpected output or exit status\n{}",
                analysis.context()
            ));
        }
        if !problems.is_empty() {
            let shown: Vec<&String> = problems.iter().take(40).collect();
            let more = problems.len().saturating_sub(shown.len());
            let mut msg = format!("{name}: {} problem(s)\n", problems.len());
            for p in shown {
                msg.push_str(&format!("  {p}\n"));
            }
            if more > 0 {
                msg.push_str(&format!("  ... and {more} more\n"));
            }
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "shared captures in {}:\n{}",
        dir.display(),
        failures.join("\n")
    );
}
