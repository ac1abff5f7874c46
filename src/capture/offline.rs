//! Reading capture files (pcap and pcapng, through libpcap) into an engine.
//!
//! A broken file stops at the packet where it broke, with an error that
//! names the file and that packet; everything read before it has already
//! gone through the engine, so nothing found is lost.

use std::path::{Path, PathBuf};

use crate::decode::LinkType;
use crate::engine::Engine;
use crate::time::Timestamp;

/// Size of a classic pcap file header and of each record header, used to
/// tell the byte offset where a classic pcap file broke.
const PCAP_FILE_HEADER: u64 = 24;
const PCAP_RECORD_HEADER: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{file}: cannot open: {reason}")]
    Open { file: String, reason: String },
    #[error("{file}: link type {link} is not one stratumguard decodes (Ethernet, Linux SLL/SLL2, raw IP, BSD loopback)")]
    UnsupportedLink { file: String, link: i32 },
    #[error("{file}: broken after packet {packets}{offset}: {reason}")]
    Broken {
        file: String,
        packets: u64,
        offset: String,
        reason: String,
    },
}

/// What reading one file did.
#[derive(Debug, Default, Clone)]
pub struct FileReport {
    pub packets: u64,
    pub bytes_read: u64,
}

/// Reads every packet of `path` into `engine`. `progress` is told the bytes
/// read so far now and then.
pub fn read_file(
    path: &Path,
    engine: &mut Engine,
    mut progress: impl FnMut(u64),
) -> Result<FileReport, (FileReport, OfflineError)> {
    let file = path.display().to_string();
    let mut report = FileReport::default();
    let mut cap = match pcap::Capture::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            return Err((
                report,
                OfflineError::Open {
                    file,
                    reason: e.to_string(),
                },
            ))
        }
    };
    let link = LinkType(cap.get_datalink().0);
    if !link.is_supported() {
        return Err((report, OfflineError::UnsupportedLink { file, link: link.0 }));
    }
    let classic = is_classic_pcap(path);
    let mut offset = PCAP_FILE_HEADER;

    loop {
        match cap.next_packet() {
            Ok(p) => {
                // time_t and suseconds_t are narrower than i64 on some targets.
                #[allow(clippy::unnecessary_cast)]
                let ts = Timestamp::from_secs_micros(
                    p.header.ts.tv_sec as i64,
                    p.header.ts.tv_usec as i64,
                );
                engine.process(ts, link, p.data, p.header.len);
                report.packets += 1;
                offset += PCAP_RECORD_HEADER + p.data.len() as u64;
                report.bytes_read = offset;
                if report.packets % 65_536 == 0 {
                    // Idle eviction runs on the capture's own clock.
                    engine.expire(ts);
                    progress(offset);
                }
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => {
                let offset = if classic {
                    format!(" (byte offset {offset})")
                } else {
                    String::new()
                };
                let err = OfflineError::Broken {
                    file,
                    packets: report.packets,
                    offset,
                    reason: e.to_string(),
                };
                return Err((report, err));
            }
        }
    }
    progress(offset);
    Ok(report)
}

/// Whether the file starts with a classic pcap magic number (either byte
/// order, micro- or nanosecond), where record offsets can be computed.
fn is_classic_pcap(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok();
    ok && matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
    )
}

/// File name endings taken when a directory is given.
const CAPTURE_EXTENSIONS: [&str; 4] = ["pcap", "pcapng", "cap", "dmp"];

/// Expands files and directories (recursively, in name order) into the list
/// of capture files to read. Files named directly are taken whatever their
/// name; in directories, only names ending in a capture extension.
pub fn expand_paths(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files, &mut errors);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push(format!("{}: no such file or directory", p.display()));
        }
    }
    (files, errors)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, files, errors);
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| CAPTURE_EXTENSIONS.iter().any(|c| x.eq_ignore_ascii_case(c)))
        {
            files.push(p);
        }
    }
}
