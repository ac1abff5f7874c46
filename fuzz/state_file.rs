//! The `state-file` target: the blocker's state file loader.
//!
//! Whatever the file holds, loading it returns a state or an error naming the
//! file, and a state that loaded saves and loads back to itself (otherwise a
//! restart would enforce something other than what was saved).

use std::path::Path;

use stratumguard::block::state::State;

/// Seeds: a state with every kind of entry and a port range, and the least
/// state that loads.
pub const STATE_SEEDS: &[&str] = &[
    r#"{"version":1,"dropped_over_cap":3,"ports":["3333","14444-14450"],"entries":[
{"net":"203.0.113.7/32","source":"detected","dialect":"stratum-v1","confidence":"confirmed","pool":"203.0.113.7:3333","added":1710406800,"renewed":1710406900,"expires":1710493200},
{"net":"198.51.100.0/24","source":"manual","added":1,"renewed":1,"expires":null},
{"net":"2001:db8::1/128","source":"operator","added":5,"renewed":6,"expires":null}]}"#,
    r#"{"version":1}"#,
];

const FILE: &str = "fuzz-state.json";

pub fn state_file(data: &[u8]) -> u64 {
    let path = Path::new(FILE);
    let text = String::from_utf8_lossy(data);
    let state = match State::parse(&text, path) {
        Ok(s) => s,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(FILE),
                "error does not name the file: {message}"
            );
            // Tell the kinds of refusal apart by the words after the file name.
            let words = message.split(": ").nth(1).unwrap_or("");
            let kind: u64 = words.bytes().take(16).map(u64::from).sum::<u64>() % 40;
            return 1 << (8 + kind);
        }
    };
    let saved = state.to_json();
    let again = State::parse(&saved, path)
        .unwrap_or_else(|e| panic!("a saved state does not load back: {e}\n{saved}"));
    assert_eq!(
        again.to_json(),
        saved,
        "a state changes when saved and loaded again"
    );
    2 | (state.len().min(8) as u64) << 2 | u64::from(!state.ports.is_empty()) << 6
}
