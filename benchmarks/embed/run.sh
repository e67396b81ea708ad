#!/usr/bin/env bash
# Model inference: Sluice's EMBED and ML_PREDICT vs raw Python onnxruntime on
# the same model files, side by side in one run (see bench.py).
#
#   bash benchmarks/embed/run.sh
#
# Environment: THREADS (intra-op threads, both sides, default 2), ROWS
# (sentences, default 10000), ROWS_PER_ROW (sentences for the per-row run,
# default ROWS; rows/s is scaled), TABULAR_ROWS (default 1000000), REPEATS
# (best of, default 3), PEER_ONLY=1 (Python side only, no server),
# SLUICE_BIN (default $CARGO_TARGET_DIR/release/sluice, built if missing),
# SLUICE_HOME (default ~/.local/share/sluice, filled by install-models.sh),
# BENCH_VENV (default $HOME/.cache/sluice-bench-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

THREADS=${THREADS:-2}
ROWS=${ROWS:-10000}
ROWS_PER_ROW=${ROWS_PER_ROW:-$ROWS}
TABULAR_ROWS=${TABULAR_ROWS:-1000000}
REPEATS=${REPEATS:-3}
SLUICE_BIN=${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}
VENV=${BENCH_VENV:-$HOME/.cache/sluice-bench-venv}
export SLUICE_HOME=${SLUICE_HOME:-$HOME/.local/share/sluice}
export THREADS  # bench.py sizes the tokenizer's thread pool from it

if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r sql-tests/clients/requirements.txt
# onnxruntime + tokenizers into the bench venv, the models into SLUICE_HOME.
SLUICE_VENV="$VENV" bash scripts/install-models.sh

args=(--rows "$ROWS" --rows-per-row "$ROWS_PER_ROW" --tabular-rows "$TABULAR_ROWS"
      --threads "$THREADS" --repeats "$REPEATS" --sluice-home "$SLUICE_HOME")
if [[ "${PEER_ONLY:-0}" == 1 ]]; then
  exec "$VENV/bin/python" benchmarks/embed/bench.py "${args[@]}"
fi

if [[ ! -x "$SLUICE_BIN" ]]; then cargo build --release -p sluice-server; fi
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d /tmp/sluice-embed-bench.XXXXXX)
"$SLUICE_BIN" serve --listen "127.0.0.1:$port" --data-dir "$data/sluice" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  if "$VENV/bin/python" -c "import psycopg; psycopg.connect(host='127.0.0.1', port=$port, user='sluice', dbname='sluice')" 2>/dev/null; then break; fi
  sleep 0.2
done
status=0
"$VENV/bin/python" benchmarks/embed/bench.py "${args[@]}" --port "$port" || status=$?
if [[ $status -ne 0 ]]; then echo "--- tail of the sluice log" >&2; tail -20 "$data/server.log" >&2; fi
exit "$status"
