//! A user adds a dialect by adding a file: the new file is loaded, shown, and
//! detects its dialect, with no change to the code.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use etherparse::PacketBuilder;
use stratumguard::decode::LinkType;
use stratumguard::engine::{Engine, EngineConfig};
use stratumguard::pools::Confidence;
use stratumguard::signatures::SignatureSet;
use stratumguard::time::Timestamp;

const TOY: &str = r#"{
  "dialect": "toy-coin",
  "description": "An invented dialect for this test.",
  "transport": "line",
  "methods": [
    { "name": "toy.hello", "from": "client", "require": ["/params/wallet"], "extract": { "login": "/params/wallet" } },
    { "name": "toy.work", "from": "server", "require": ["/params/0"] }
  ]
}"#;

/// The shipped signatures folder plus the toy file, in a temp dir.
fn folder_with_toy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    for e in std::fs::read_dir(shipped).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.path().join("toy-coin.json"), TOY).unwrap();
    dir
}

fn segment(from_client: bool, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        ([10, 9, 0, 1], [10, 9, 0, 2], 50000, 41234)
    } else {
        ([10, 9, 0, 2], [10, 9, 0, 1], 41234, 50000)
    };
    let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4(src, dst, 64);
    let b = if syn {
        b.tcp(sp, dp, seq, 64240).syn()
    } else {
        b.tcp(sp, dp, seq, 64240).ack(1)
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn a_dialect_added_as_a_file_detects_its_pool() {
    let dir = folder_with_toy();
    let sigs = SignatureSet::load_dir(dir.path()).unwrap();
    let mut engine = Engine::new(EngineConfig::default(), Arc::new(sigs));
    let hello = b"{\"id\":1,\"method\":\"toy.hello\",\"params\":{\"wallet\":\"TOY123\"}}\n";
    let work = b"{\"id\":null,\"method\":\"toy.work\",\"params\":[\"abcd\"]}\n";
    let packets = [
        segment(true, 100, true, b""),
        segment(true, 101, false, hello),
        segment(false, 500, false, work),
    ];
    for (i, p) in packets.iter().enumerate() {
        engine.process(Timestamp(i as u64), LinkType::ETHERNET, p, p.len() as u32);
    }
    let pools = engine.pools().sorted();
    assert_eq!(pools.len(), 1);
    assert_eq!(
        pools[0].server,
        "10.9.0.2:41234".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(pools[0].dialect, "toy-coin");
    assert_eq!(pools[0].confidence, Confidence::Confirmed);
    assert_eq!(pools[0].login.as_deref(), Some("TOY123"));
}

#[test]
fn the_same_traffic_is_not_detected_without_the_file() {
    let mut engine = Engine::new(
        EngineConfig::default(),
        Arc::new(SignatureSet::builtin().unwrap()),
    );
    let hello = b"{\"id\":1,\"method\":\"toy.hello\",\"params\":{\"wallet\":\"TOY123\"}}\n";
    let p = segment(true, 101, false, hello);
    engine.process(Timestamp(0), LinkType::ETHERNET, &p, p.len() as u32);
    assert!(engine.pools().is_empty());
}

#[test]
fn signatures_list_and_check_show_the_added_dialect() {
    let dir = folder_with_toy();
    let bin = env!("CARGO_BIN_EXE_stratumguard");
    let list = Command::new(bin)
        .args(["signatures", "list", "--signatures"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("toy-coin") && text.contains("toy.hello"),
        "{text}"
    );

    let check = Command::new(bin)
        .args(["signatures", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_broken_signature_file_is_refused_naming_file_and_line() {
    let dir = folder_with_toy();
    std::fs::write(
        dir.path().join("broken.json"),
        "{\n  \"dialect\": \"x\",\n  \"transport\": \"carrier-pigeon\"\n}",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_stratumguard");
    let out = Command::new(bin)
        .args(["signatures", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json: line 3"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
