#!/usr/bin/env bash
# Set-up, build, and the main job: analyze every capture shipped in captures/.
# Extra arguments go to `stratumguard analyze` (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
exec target/release/stratumguard analyze captures/ "$@"
