#!/usr/bin/env bash
# Keyed stages across cores: a continuous GROUP BY, a HOP window, a join and
# a SESSION aggregate at parallelism 1 vs N on the same generated events
# (see bench.py).
#
#   bash benchmarks/parallelism/run.sh          # 1M bids, parallelism = cores
#   SMOKE=1 bash benchmarks/parallelism/run.sh  # 50k bids: seconds
# Environment: SLUICE_BIN (default target/release/sluice), SLUICE_PORT
# (5488), SLUICE_VENV (the test suite's venv, for psycopg), PARALLELISM
# (default: the core count).
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
VENV=${SLUICE_VENV:-$PWD/.venv}
EVENTS=1000000
if [[ ${SMOKE:-0} == 1 ]]; then EVENTS=50000; fi
if [[ ! -x $SLUICE_BIN ]]; then cargo build --release -p sluice-server; fi
"$VENV/bin/python" benchmarks/parallelism/bench.py "$SLUICE_BIN" "${SLUICE_PORT:-5488}" \
    --events "$EVENTS" --parallelism "${PARALLELISM:-$(nproc)}"
