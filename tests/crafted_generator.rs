//! The committed crafted captures must be exactly what the generator writes,
//! so a change to one without the other cannot go unnoticed.

use std::collections::BTreeSet;
use std::path::Path;

#[allow(
    dead_code,
    reason = "only write_all is used here; main belongs to the example"
)]
#[path = "../examples/make_captures/main.rs"]
mod make_captures;

#[test]
fn committed_crafted_captures_are_byte_identical_to_a_fresh_generation() {
    let fresh = tempfile::tempdir().expect("temporary directory");
    let written = make_captures::write_all(fresh.path()).expect("generator writes its files");
    let committed_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/crafted");

    let mut differ = Vec::new();
    let mut names = BTreeSet::new();
    for path in &written {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let new = std::fs::read(path).expect("read generated file");
        match std::fs::read(committed_dir.join(&name)) {
            Ok(old) if old == new => {}
            Ok(old) => {
                let at = old
                    .iter()
                    .zip(&new)
                    .position(|(a, b)| a != b)
                    .unwrap_or(old.len().min(new.len()));
                differ.push(format!(
                    "{name}: differs at byte {at} (committed {} bytes, fresh {})",
                    old.len(),
                    new.len()
                ))
            }
            Err(e) => differ.push(format!("{name}: generated but not committed ({e})")),
        }
        names.insert(name);
    }
    for entry in std::fs::read_dir(&committed_dir).expect("list captures/crafted") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !names.contains(&name) {
            differ.push(format!("{name}: committed but no longer generated"));
        }
    }
    assert!(
        differ.is_empty(),
        "captures/crafted is out of step with examples/make_captures; run \
         `cargo run --example make_captures` and commit:\n{}",
        differ.join("\n")
    );
}
