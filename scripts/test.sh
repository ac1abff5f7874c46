#!/usr/bin/env bash
# Set-up and the whole test suite: format and lint gates, every unit and
# integration test (the network-namespace and firewall tests need root), and a
# short fuzzing run. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# The namespace tests run the test peers in examples/ as programs; `cargo test
# --all-targets` builds examples only as test harnesses, so build them first.
cargo build --examples --quiet
# One test binary at a time: the namespace tests each build their own small
# network, and two cores are shared with the build.
cargo test --all-targets -- --test-threads=2

# A minute of the stable fuzz driver over every target (fuzz/README.md):
# any crash, broken bound or slow input fails the run.
cargo run --quiet --profile fuzz --example fuzz -- --seconds 60 all
