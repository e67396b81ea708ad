#!/usr/bin/env bash
# HNSW search through SQL: Sluice's CREATE INDEX … USING hnsw vs FAISS
# IndexHNSWFlat and LanceDB (IVF_HNSW_FLAT, one partition) on the same
# clustered vectors, side by side (ann.py): queries one at a time, in
# batches of 100 (one LATERAL VECTOR_SEARCH statement each), and filtered.
#
#   bash benchmarks/vectors/ann.sh            # 1M x 384, 1,000 queries
#   SMOKE=1 bash benchmarks/vectors/ann.sh    # 20k x 64, 100 queries: under a minute
#
# Environment: ROWS, DIM, QUERIES, EF (comma-separated ef_search values),
# SLUICE_BIN (default target/release/sluice, built if missing),
# BENCH_VENV (default $HOME/.cache/sluice-bench-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${ROWS:-1000000}
DIM=${DIM:-384}
QUERIES=${QUERIES:-1000}
EF=${EF:-16,32,64,128,256}
if [[ ${SMOKE:-0} == 1 ]]; then ROWS=20000; DIM=64; QUERIES=100; fi
PORT=5493
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
VENV=${BENCH_VENV:-$HOME/.cache/sluice-bench-venv}

if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/pip" install -q -r benchmarks/vectors/requirements.txt; then
  # LanceDB is one peer of three: without it ann.py says so and runs the rest.
  echo "# lancedb: pip install failed, installing the rest without it"
  reqs=$(mktemp)
  grep -v '^lancedb' benchmarks/vectors/requirements.txt >"$reqs"
  "$VENV/bin/pip" install -q -r "$reqs"
  rm -f "$reqs"
fi
if [[ ! -x "$SLUICE_BIN" ]]; then cargo build --release -p sluice-server; fi

data=$(mktemp -d /tmp/sluice-ann-bench.XXXXXX)
trap 'rm -rf "$data"' EXIT
"$SLUICE_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data/sluice" >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 50); do
  if "$VENV/bin/python" -c "import psycopg; psycopg.connect(host='127.0.0.1', port=$PORT, user='sluice', dbname='sluice')" 2>/dev/null; then break; fi
  sleep 0.2
done
status=0
"$VENV/bin/python" benchmarks/vectors/ann.py --rows "$ROWS" --dim "$DIM" --queries "$QUERIES" \
  --ef "$EF" --port "$PORT" --work "$data" --server-pid "$pid" || status=$?
kill "$pid"; wait "$pid" || true
exit "$status"
