//! The state file survives a process killed mid-write: a child process
//! rewrites a large state file in a loop, and is killed with SIGKILL at
//! arbitrary moments; after each kill the file must parse and hold every
//! entry of one generation, never a torn mix.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use stratumguard::block::state::{Entry, Source, State};

/// Entries per generation: about 4 MB of JSON, so a write takes long
/// enough to be caught in the middle.
const ENTRIES: u32 = 15_000;
const ROUNDS: u32 = 8;
const CHILD_ENV: &str = "STRATUMGUARD_TEST_STATE_WRITER";

fn generation(n: u64) -> State {
    let mut s = State::default();
    for i in 0..ENTRIES {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let e = Entry {
            net: format!("{ip}/32").parse().unwrap(),
            source: Source::Detected,
            dialect: Some("stratum-v1".into()),
            confidence: Some("confirmed".into()),
            pool: Some(format!("{ip}:3333").parse().unwrap()),
            added: n,
            renewed: n,
            expires: Some(n + 86_400),
        };
        s.upsert_detected(e, n, Some(86_400), ENTRIES as usize);
    }
    // The generation number rides in a counter so a torn mix is detectable.
    s.dropped_over_cap = n;
    s
}

/// Run only as the child of the test below; it never ends on its own.
#[test]
#[ignore = "helper process for state_file_is_whole_after_kills_during_writes"]
fn state_writer_child_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    for n in 1.. {
        generation(n).save(Path::new(&path)).unwrap();
    }
}

/// Cheap varied delays without a random-number dependency.
fn jitter_ms(round: u32) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    150 + u64::from((nanos ^ round.wrapping_mul(2_654_435_761)) % 600)
}

#[test]
fn state_file_is_whole_after_kills_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut generations = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "state_writer_child_process",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(jitter_ms(round)));
        child.kill().unwrap(); // SIGKILL: no chance to finish the write
        child.wait().unwrap();

        if !path.exists() {
            continue; // killed before its first write finished: nothing to check
        }
        let s = State::load(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let n = s.dropped_over_cap;
        assert_eq!(s.len(), ENTRIES as usize, "round {round}: entries lost");
        assert!(
            s.entries().all(|e| e.added == n),
            "round {round}: generations mixed"
        );
        generations.push(n);
    }
    // The kills landed while the writer was busy, not before it began.
    assert!(
        generations.len() >= ROUNDS as usize / 2,
        "too few rounds wrote: {generations:?}"
    );
}
