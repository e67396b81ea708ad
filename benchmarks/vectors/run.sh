#!/usr/bin/env bash
# Vector distance kernels: Sluice vs DuckDB on the same data, side by side.
#
#   bash benchmarks/vectors/run.sh
#
# Environment: ROWS (default 1000000), DIMS (default "384 1536"),
# ROWS_1536 (default 250000: 1M x 1536 float32 is 6 GB per engine),
# SLUICE_BIN (default target/release/sluice, built if missing),
# BENCH_VENV (default $HOME/.cache/sluice-bench-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-1000000}
ROWS_1536=${ROWS_1536:-250000}
DIMS=${DIMS:-"384 1536"}
PORT=5497
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
VENV=${BENCH_VENV:-$HOME/.cache/sluice-bench-venv}

if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r benchmarks/vectors/requirements.txt
if [[ ! -x "$SLUICE_BIN" ]]; then cargo build --release -p sluice-server; fi

for dim in $DIMS; do
  rows=$ROWS
  if [[ $dim -ge 1536 ]]; then rows=$ROWS_1536; fi
  data=$(mktemp -d /tmp/sluice-vector-bench.XXXXXX)
  "$SLUICE_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data/sluice" >"$data/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    if "$VENV/bin/python" -c "import psycopg; psycopg.connect(host='127.0.0.1', port=$PORT, user='sluice', dbname='sluice')" 2>/dev/null; then break; fi
    sleep 0.2
  done
  status=0
  "$VENV/bin/python" benchmarks/vectors/bench.py --rows "$rows" --dim "$dim" --port "$PORT" --work "$data" || status=$?
  kill "$pid"; wait "$pid" || true
  rm -rf "$data"
  if [[ $status -ne 0 ]]; then exit "$status"; fi
done
