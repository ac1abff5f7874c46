//! One state file serves one backend: using it with another backend is
//! refused, and flushing another backend leaves it alone. The `list` and
//! `windows` backends write files only, so no firewall is touched here.

use std::path::Path;
use std::process::{Command, Output};

fn sg(dir: &Path, args: &[&str]) -> Output {
    let state = dir.join("state.json");
    Command::new(env!("CARGO_BIN_EXE_stratumguard"))
        .args(["block"])
        .args(args)
        .arg("--state")
        .arg(&state)
        .arg("--list-file")
        .arg(dir.join("list.txt"))
        .arg("--windows-dir")
        .arg(dir.join("windows"))
        .output()
        .expect("run stratumguard")
}

#[test]
fn a_state_file_of_one_backend_is_refused_by_another_and_survives_its_flush() {
    let dir = tempfile::tempdir().unwrap();
    let add = sg(dir.path(), &["add", "203.0.113.8", "--backend", "list"]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );

    let other = sg(dir.path(), &["list", "--backend", "windows"]);
    assert_eq!(other.status.code(), Some(2));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("list backend") && err.contains("--backend list"),
        "{err}"
    );

    let flush = sg(dir.path(), &["flush", "--backend", "windows"]);
    assert!(
        flush.status.success(),
        "{}",
        String::from_utf8_lossy(&flush.stderr)
    );

    let list = sg(dir.path(), &["list", "--backend", "list"]);
    assert!(list.status.success());
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("203.0.113.8/32"),
        "the entry survived"
    );
    let file = std::fs::read_to_string(dir.path().join("list.txt")).unwrap();
    assert!(file.contains("203.0.113.8"), "{file}");
}
