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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --all-targets -- --test-threads=2 2>&1 | tee "$log"

# A minute of the stable fuzz driver over every target (fuzz/README.md):
# any crash, broken bound or slow input fails the run.
cargo run --quiet --profile fuzz --example fuzz -- --seconds 60 all

# One closing line for the whole suite, from cargo's per-binary results.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
