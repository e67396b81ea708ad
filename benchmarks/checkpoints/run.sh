#!/usr/bin/env bash
# Checkpoint overhead and regional vs whole-query recovery, side by side in
# one run (see bench.py for what is measured).
#
#   bash benchmarks/checkpoints/run.sh            # 1M bids, 20k embedded events
#   SMOKE=1 bash benchmarks/checkpoints/run.sh    # 20k bids, 1k events: about a minute
# Environment: SLUICE_BIN (default target/release/sluice), SLUICE_PORT (5487),
# SLUICE_VENV (the test suite's venv, for psycopg), OUT_FILE
# (/tmp/sluice-checkpoints.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
VENV=${SLUICE_VENV:-$PWD/.venv}
OUT_FILE=${OUT_FILE:-/tmp/sluice-checkpoints.txt}
if [[ ${SMOKE:-0} == 1 ]]; then
    ARGS=(--events 20000 --pace 8000 --embed-events 1000 --failures 6)
else
    ARGS=()
fi
if [[ ! -x $SLUICE_BIN ]]; then
    cargo build --release -p sluice-server
fi
"$VENV/bin/python" benchmarks/checkpoints/bench.py "$SLUICE_BIN" "${SLUICE_PORT:-5487}" "${ARGS[@]}" | tee "$OUT_FILE"
