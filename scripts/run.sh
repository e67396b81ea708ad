#!/usr/bin/env bash
# Builds Sluice and serves it on 127.0.0.1:5433 with the embedded defaults
# (data in ./sluice-data). Extra arguments go to `sluice serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# ONNX Runtime and the default embedding model (skipped when installed).
bash scripts/install-models.sh
cargo build --release -p sluice-server
exec "${CARGO_TARGET_DIR:-target}/release/sluice" serve "$@"
