//! Damaged capture files the other corrupt-input tests do not cover: a link
//! type nobody decodes in the file header, records longer than the file's
//! snap length, zero-length records, and a file cut inside its header.
//! Each runs the real binary on a file written to a temporary directory.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{analyze, compare, expected_path, read_expected, repo_root, Analysis};

const SOURCE: &str = "captures/crafted/stratum-v1-high-port.pcap";
/// Classic pcap: a 24-byte file header, then 16-byte record headers.
const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

fn source() -> PathBuf {
    repo_root().join(SOURCE)
}

/// The crafted file's bytes; it is little-endian, microsecond pcap.
fn source_bytes() -> Vec<u8> {
    let b = std::fs::read(source()).expect("read crafted capture");
    assert_eq!(
        &b[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian pcap expected"
    );
    b
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// (header offset, captured length) of every record.
fn records(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = FILE_HEADER;
    while at + RECORD_HEADER <= b.len() {
        let incl = u32_at(b, at + 8) as usize;
        out.push((at, incl));
        at += RECORD_HEADER + incl;
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test capture");
    p
}

/// The `stats` object of the run's last line.
fn stats(a: &Analysis) -> Value {
    a.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event_type"] == "stats")
        .map(|v| v["stats"].clone())
        .unwrap_or_else(|| panic!("no stats line\n{}", a.context()))
}

fn expect_pools_of_source(a: &Analysis, what: &str) {
    let expected = read_expected(&expected_path(&source()));
    if let Err(msg) = compare(what, &expected, a) {
        panic!("{msg}");
    }
}

#[test]
fn a_pcap_whose_header_names_an_unknown_link_type_is_reported_and_the_next_file_still_read() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut bytes = source_bytes();
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
    let bogus = write(dir.path(), "link-147.pcap", &bytes);

    let a = analyze(&[&bogus, &source()]);
    assert_eq!(a.status.code(), Some(2), "{}", a.context());
    let line = a
        .stderr
        .lines()
        .find(|l| l.contains("link-147.pcap"))
        .unwrap_or_else(|| panic!("no error names the file\n{}", a.context()));
    assert!(line.contains("link type 147"), "{line}");
    expect_pools_of_source(&a, "unknown link type, then the good file");
}

#[test]
fn records_longer_than_the_files_snap_length_are_cut_to_it_and_counted_as_truncated() {
    // libpcap reads at most the snap length of a record that claims more
    // (and refuses a record past its own hard maximum, which
    // corrupt_input.rs covers). The engine counts the cut packets.
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut bytes = source_bytes();
    let snaplen = 60u32;
    bytes[16..20].copy_from_slice(&snaplen.to_le_bytes());
    let longer = records(&bytes)
        .iter()
        .filter(|(_, incl)| *incl > snaplen as usize)
        .count();
    assert!(longer > 0);
    let path = write(dir.path(), "caplen-over-snaplen.pcap", &bytes);

    let a = analyze(&[&path]);
    assert!(
        matches!(a.status.code(), Some(0) | Some(2)),
        "must finish, not crash\n{}",
        a.context()
    );
    let s = stats(&a);
    assert_eq!(s["packets"], records(&bytes).len(), "{}", a.context());
    assert_eq!(s["truncated"], longer, "{}", a.context());
}

#[test]
fn zero_length_records_are_counted_as_undecodable_and_the_session_is_still_found() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bytes = source_bytes();
    let recs = records(&bytes);

    // After every record, an empty one with the same timestamp.
    let mut out = bytes[..FILE_HEADER].to_vec();
    for &(at, incl) in &recs {
        out.extend_from_slice(&bytes[at..at + RECORD_HEADER + incl]);
        out.extend_from_slice(&bytes[at..at + 8]);
        out.extend_from_slice(&[0; 8]);
    }
    let path = write(dir.path(), "zero-length-records.pcap", &out);

    let a = analyze(&[&path]);
    assert_eq!(a.status.code(), Some(0), "{}", a.context());
    let s = stats(&a);
    assert_eq!(s["packets"], 2 * recs.len());
    assert_eq!(s["decode_errors"], recs.len());
    expect_pools_of_source(&a, "zero-length records");
}

#[test]
fn a_file_cut_inside_its_header_is_reported_by_name() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bytes = source_bytes();
    let path = write(dir.path(), "cut-in-header.pcap", &bytes[..10]);

    let a = analyze(&[&path]);
    assert_eq!(a.status.code(), Some(2), "{}", a.context());
    assert!(
        a.stderr.contains("cut-in-header.pcap"),
        "the error must name the file\n{}",
        a.context()
    );
    assert!(a.pools.is_empty());
}
