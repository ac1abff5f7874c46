//! The fuzz targets on their seeds: keeps the targets building and running
//! in the test suite, and shows that the packet target reaches detection
//! (a fuzzer that never gets past decoding would find little).

use crate::common::repo_root;
use crate::targets;

#[test]
fn the_packet_target_reads_the_real_captures_to_a_confirmed_pool_without_a_panic() {
    let capture = repo_root().join("captures/crafted/stratum-v1-high-port.pcap");
    let seeds = targets::packet_seeds_from_capture(&capture, 1 << 20, 1);
    assert_eq!(seeds.len(), 1);
    let reached = targets::packets(&seeds[0]);
    // Bits 16.. are (dialect, confidence) pairs; odd ones are confirmed.
    let confirmed = (16..48).step_by(2).any(|b| reached & (1 << (b + 1)) != 0);
    assert!(confirmed, "reached {reached:#x}");
}

#[test]
fn the_signature_target_loads_the_shipped_files_and_rejects_a_broken_one() {
    let all = targets::SIGNATURE_FILES.join("\0");
    assert!(
        targets::signatures(all.as_bytes()) & (1 << 32) != 0,
        "shipped files must load"
    );
    let broken = all.replacen("\"transport\"", "\"transport\" x", 1);
    assert_eq!(
        targets::signatures(broken.as_bytes()),
        1,
        "a syntax error is refused"
    );
}
