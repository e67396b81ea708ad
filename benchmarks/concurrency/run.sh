#!/usr/bin/env bash
# Mixed concurrent load: Sluice vs PostgreSQL 15, one engine at a time.
#
# What it measures (mixed.py, asyncpg, every statement prepared, autocommit)
#   CLIENTS connections loop for DURATION seconds over a seeded weighted mix
#   against t(id BIGINT, name TEXT, score DOUBLE PRECISION), preloaded with
#   PRELOAD rows (COPY), no index on either side:
#     insert  INSERT INTO t VALUES ($1, $2, $3)
#     point   SELECT name, score FROM t WHERE id = $1
#     scan    SELECT count(*), avg(score) FROM t WHERE id BETWEEN $1 AND $1 + 1000
#     embed   Sluice: SELECT EMBED('minilm', $1); Postgres has no EMBED and
#             runs SELECT md5($1) instead: that row is NOT comparable.
#   Every result is checked; any error (SQLSTATE, client-side timeout, wrong
#   result), a row missing afterwards (count(*) = PRELOAD + inserts
#   acknowledged) or Sluice's memory reaching --memory-limit (VmRSS sampled
#   every 0.5 s, and VmHWM) fails the run: the table is still printed, then
#   the first errors, and the exit status is non-zero.
#   Reports per kind: statements done, errors, QPS, p50/p99 latency (ms,
#   measured in the client), and the total QPS ratio sluice / postgres.
#   Compare ratios, not absolute numbers: the machines are small and noisy,
#   and the client (one Python process) shares the cores with the server.
#
# How to run (as root, from anywhere):
#   bash benchmarks/concurrency/run.sh
#   CLIENTS=16 DURATION=10 bash benchmarks/concurrency/run.sh     # smoke run
# Environment:
#   CLIENTS        concurrent connections (default 64)
#   DURATION       seconds per engine (default 60)
#   PRELOAD        rows loaded before the run (default 100000)
#   MIX            kind=weight,… (default insert=20,point=40,scan=30,embed=10)
#   MEMORY_LIMIT   Sluice's --memory-limit, and the RSS bound (default 2GiB)
#   PG_INDEX       1: give Postgres a B-tree index on t(id) (Sluice has none)
#   SLUICE_BIN     the sluice binary (default target/release/sluice)
#   SLUICE_VENV    the Python venv with asyncpg and pgvector
#                  (default $HOME/.cache/sluice-venv)
#   PG_PORT, SLUICE_PORT  (default 5482, 5481)
#   OUT_FILE       the result table is also written here
#                  (default /tmp/sluice-concurrency.txt)
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO_ROOT=$(pwd)

CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-60}
PRELOAD=${PRELOAD:-100000}
MIX=${MIX:-insert=20,point=40,scan=30,embed=10}
MEMORY_LIMIT=${MEMORY_LIMIT:-2GiB}
PG_INDEX=${PG_INDEX:-0}
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
SLUICE_VENV=${SLUICE_VENV:-$HOME/.cache/sluice-venv}
OUT_FILE=${OUT_FILE:-/tmp/sluice-concurrency.txt}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=${PG_PORT:-5482}
SLUICE_PORT=${SLUICE_PORT:-5481}
PY="$SLUICE_VENV/bin/python"

log() { echo "[concurrency] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -x $PY ]] || die "$PY missing (set SLUICE_VENV; scripts/install-deps.sh makes it)"
"$PY" -c 'import asyncpg, pgvector.asyncpg' 2>/dev/null || die "$PY lacks asyncpg or pgvector"

source "$REPO_ROOT/benchmarks/lib/side_by_side.sh"
ensure_ports_free
ensure_postgres15
ensure_sluice_bin
make_workdir concurrency
# 64 clients, the setup connection and the check after the run.
start_postgres -c max_connections=$((CLIENTS + 20))

log "starting $SLUICE_BIN on 127.0.0.1:$SLUICE_PORT with --memory-limit $MEMORY_LIMIT"
"$SLUICE_BIN" serve --listen "127.0.0.1:$SLUICE_PORT" --data-dir "$SLUICE_DATA" \
    --memory-limit "$MEMORY_LIMIT" --max-connections $((CLIENTS + 20)) >"$SLUICE_LOG" 2>&1 &
SLUICE_PID=$!
ready=0
for _ in $(seq 1 120); do
    kill -0 "$SLUICE_PID" 2>/dev/null || { sluice_log_tail; die "sluice exited during startup"; }
    if psql -h 127.0.0.1 -p "$SLUICE_PORT" -U sluice -d sluice -XAtc 'select 1' >/dev/null 2>&1; then
        ready=1; break
    fi
    sleep 0.5
done
[[ $ready == 1 ]] || { sluice_log_tail; die "sluice not ready on port $SLUICE_PORT after 60 s"; }

common=(--clients "$CLIENTS" --duration "$DURATION" --preload "$PRELOAD" --mix "$MIX")
pg_extra=()
[[ $PG_INDEX == 1 ]] && pg_extra=(--pg-index)

status=0
log "postgres: $CLIENTS clients for ${DURATION}s"
"$PY" benchmarks/concurrency/mixed.py run --engine postgres --port "$PG_PORT" "${common[@]}" \
    "${pg_extra[@]}" --json "$WORK/postgres.json" || status=1
log "sluice: $CLIENTS clients for ${DURATION}s"
"$PY" benchmarks/concurrency/mixed.py run --engine sluice --port "$SLUICE_PORT" "${common[@]}" \
    --server-pid "$SLUICE_PID" --memory-limit "$MEMORY_LIMIT" --json "$WORK/sluice.json" || status=1
[[ -s $WORK/postgres.json && -s $WORK/sluice.json ]] || { sluice_log_tail; die "a run left no result"; }
"$PY" benchmarks/concurrency/mixed.py report "$WORK/postgres.json" "$WORK/sluice.json" --out "$OUT_FILE" \
    || status=1
if [[ $status != 0 ]]; then
    sluice_log_tail
    die "the run failed (errors above; table in $OUT_FILE)"
fi
