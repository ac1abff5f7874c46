//! Writes the crafted test captures and their expected verdicts.
//!
//! ```text
//! cargo run --example make_captures            # into captures/crafted/
//! cargo run --example make_captures -- DIR     # somewhere else
//! ```
//!
//! Output is deterministic (fixed clock, fixed-seed filler), so the committed
//! files can be checked against a fresh run; `tests/crafted_generator.rs`
//! does exactly that.

use std::io;
use std::path::{Path, PathBuf};

mod capture_file;
mod cases;
mod messages;
mod tcp_flow;

/// Writes every case into `dir` and returns the paths written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for case in cases::all() {
        let ext = case.format.extension();
        let bytes = capture_file::encode(
            case.format,
            case.capture.link().linktype(),
            &case.capture.records,
        );
        let capture = dir.join(format!("{}.{ext}", case.name));
        std::fs::write(&capture, bytes)?;
        written.push(capture);

        let expected = dir.join(format!("{}.expected.tsv", case.name));
        std::fs::write(&expected, expected_tsv(&case, ext))?;
        written.push(expected);
    }
    Ok(written)
}

fn expected_tsv(case: &cases::Crafted, ext: &str) -> String {
    let mut out = format!(
        "# {}.{ext}: crafted by examples/make_captures (do not edit; regenerate).\n",
        case.name
    );
    for line in case.about.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    if case.expect.is_empty() {
        out.push_str("# No data lines: no pool may be reported.\n");
    }
    out.push_str("# server_endpoint\tdialect\tconfidence\n");
    for e in &case.expect {
        out.push_str(&format!("{}\t{}\t{}\n", e.server, e.dialect, e.confidence));
    }
    out
}

fn main() -> io::Result<()> {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/crafted"),
    };
    let written = write_all(&dir)?;
    println!("wrote {} files into {}", written.len(), dir.display());
    Ok(())
}
