//! Hostile input: floods of flows, abusive byte streams, malformed packets
//! and damaged files. Every test names the limit it exercises and asserts
//! that the limit held and was counted; none of them may panic.
//!
//! The full-size flood (a million flows at the default limits, with the
//! peak memory) is `cargo run --release --example flood`.

#[path = "common/mod.rs"]
mod common;
#[path = "hostile/files.rs"]
mod files;
#[path = "hostile/flood.rs"]
mod flood;
#[path = "hostile/fuzz_inputs.rs"]
mod fuzz_inputs;
#[path = "hostile/packets.rs"]
mod packets;
#[path = "hostile/streams.rs"]
mod streams;
#[path = "../fuzz/targets.rs"]
mod targets;
#[path = "hostile/wire.rs"]
mod wire;
