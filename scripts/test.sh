#!/usr/bin/env bash
# The whole test suite: installs what the tests need, runs every Rust test
# (unit tests, the .slt suites in-process and over the wire, protocol
# tests), then real clients (psql, psycopg, sqllogictest CLI) against the
# `sluice` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The house first: formatting, lints, and no import circle between the
# top-level modules of any crate.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
python3 scripts/module_cycles.py
cargo build --workspace --bins
cargo test --workspace 2>&1 | tee /tmp/sluice-cargo-test.log
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CLIENT_COUNTS_FILE=/tmp/sluice-client-counts
bash scripts/client-checks.sh "$TARGET_DIR/debug/sluice"
# One closing line for the whole run: cargo's per-binary counts plus the
# client checks.
read -r client_passed client_failed < "$CLIENT_COUNTS_FILE"
awk -v cp="$client_passed" -v cf="$client_failed" \
  '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
   END { printf "tests: %d passed, %d failed\n", p + cp, f + cf }' /tmp/sluice-cargo-test.log
