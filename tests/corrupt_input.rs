//! Bad input files: a capture cut off in the middle of a packet, a file that
//! is not a capture at all, and a record header claiming a huge packet. The
//! contract: a clear error naming the file (and where in it), the pools found
//! before the damage still reported, the other files still analysed, no panic.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{analyze, compare, expected_path, read_expected, repo_root, Analysis, Verdict};

fn crafted(name: &str) -> PathBuf {
    repo_root().join("captures/crafted").join(name)
}

/// Writes the first `len` bytes of `source` to `dir/name`.
fn truncated_copy(source: &Path, len: usize, dir: &Path, name: &str) -> PathBuf {
    let bytes = std::fs::read(source).expect("read crafted capture");
    assert!(len < bytes.len(), "the cut must fall inside the file");
    let path = dir.join(name);
    std::fs::write(&path, &bytes[..len]).expect("write truncated copy");
    path
}

/// The byte offset of each classic-pcap record header, in order.
fn pcap_record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        offsets.push(at);
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        at += 16 + incl;
    }
    offsets
}

/// The byte offset of each pcapng block (little-endian files), in order.
fn pcapng_block_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        offsets.push(at);
        let total = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        assert!(total >= 12, "crafted pcapng blocks are well formed");
        at += total;
    }
    offsets
}

/// The process ran to the end and did not crash or panic: 0 (analysis ran)
/// or 2 (errors reported) are both allowed here.
fn assert_no_crash(analysis: &Analysis) {
    match analysis.status.code() {
        Some(0) | Some(2) => {}
        _ => panic!(
            "analysis must finish with status 0 or 2, not crash\n{}",
            analysis.context()
        ),
    }
}

/// stderr has a line naming `file` that says where the damage is.
fn assert_error_names_file_and_position(analysis: &Analysis, file: &Path) {
    let name = file
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let line = analysis.stderr.lines().find(|l| l.contains(name.as_str()));
    let Some(line) = line else {
        panic!("no error on stderr names {name}\n{}", analysis.context());
    };
    let lower = line.to_lowercase();
    let says_where = ["packet", "offset", "record", "byte"]
        .iter()
        .any(|w| lower.contains(w))
        && line.chars().any(|c| c.is_ascii_digit());
    assert!(
        says_where,
        "the error for {name} must give a packet number or byte offset: {line:?}"
    );
}

/// stderr names `file` (no position needed: the whole file is unreadable).
fn assert_error_names_file(analysis: &Analysis, file: &Path) {
    let name = file
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    assert!(
        analysis.stderr.contains(name.as_str()),
        "no error on stderr names {name}\n{}",
        analysis.context()
    );
    let in_json = analysis.errors.iter().any(|e| {
        e.get("file")
            .and_then(|f| f.as_str())
            .is_some_and(|f| f.ends_with(name.as_str()))
    });
    assert!(
        in_json,
        "no {{\"event_type\":\"error\"}} line names {name}\n{}",
        analysis.context()
    );
}

fn expected_union(captures: &[PathBuf]) -> BTreeSet<Verdict> {
    captures
        .iter()
        .flat_map(|c| read_expected(&expected_path(c)))
        .collect()
}

#[test]
fn truncated_and_non_capture_files_are_reported_and_the_good_file_still_analysed() {
    let dir = tempfile::tempdir().expect("temporary directory");

    // Cut the session in the middle of its last record (the final ACK of the
    // close), after all the Stratum evidence.
    let source = crafted("stratum-v1-high-port.pcap");
    let bytes = std::fs::read(&source).expect("read");
    let last = *pcap_record_offsets(&bytes).last().expect("records");
    let truncated = truncated_copy(&source, last + 16 + 10, dir.path(), "cut-mid-record.pcap");

    let not_a_capture = dir.path().join("not-a-capture.pcap");
    std::fs::write(
        &not_a_capture,
        b"This is a text file, not a packet capture.\n",
    )
    .expect("write");

    let good = crafted("cryptonote-xmrig.pcap");
    let analysis = analyze(&[&truncated, &not_a_capture, &good]);

    assert_no_crash(&analysis);
    assert_error_names_file_and_position(&analysis, &truncated);
    assert_error_names_file(&analysis, &not_a_capture);
    let expected = expected_union(&[source, good]);
    if let Err(msg) = compare("truncated + not-a-capture + good", &expected, &analysis) {
        panic!("{msg}");
    }
}

#[test]
fn pcapng_cut_inside_a_block_still_reports_the_pool_seen_before() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = crafted("stratum-v1-ipv6.pcapng");
    let bytes = std::fs::read(&source).expect("read");

    // Cut 40 bytes into the last block (the packet block of the final ACK):
    // past its header, inside the packet data.
    let last = *pcapng_block_offsets(&bytes).last().expect("blocks");
    let truncated = truncated_copy(&source, last + 40, dir.path(), "cut-mid-block.pcapng");
    let analysis = analyze(&[&truncated]);

    assert_no_crash(&analysis);
    assert_error_names_file_and_position(&analysis, &truncated);
    let expected = read_expected(&expected_path(&source));
    if let Err(msg) = compare("cut-mid-block.pcapng", &expected, &analysis) {
        panic!("{msg}");
    }
}

#[test]
fn a_record_claiming_a_huge_length_is_an_error_not_an_allocation() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = crafted("stratum-v1-high-port.pcap");
    let mut bytes = std::fs::read(&source).expect("read");

    // Rewrite the last record header to claim a 3.9 GB packet.
    let last = *pcap_record_offsets(&bytes).last().expect("records");
    bytes[last + 8..last + 12].copy_from_slice(&0xf000_0000u32.to_le_bytes());
    bytes[last + 12..last + 16].copy_from_slice(&0xf000_0000u32.to_le_bytes());
    let path = dir.path().join("huge-record.pcap");
    std::fs::write(&path, &bytes).expect("write");

    let analysis = analyze(&[&path]);
    assert_no_crash(&analysis);
    assert_error_names_file_and_position(&analysis, &path);
    let expected = read_expected(&expected_path(&source));
    if let Err(msg) = compare("huge-record.pcap", &expected, &analysis) {
        panic!("{msg}");
    }
}
