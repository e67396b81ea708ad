#!/usr/bin/env bash
# TPC-H: Sluice vs PostgreSQL 15 vs DataFusion in-process, side by side.
#
# What it measures
#   The 22 TPC-H queries (queries/q01.sql … q22.sql, the specification's
#   validation parameters; Q15's view written as a WITH clause) at scale
#   factor SF, on the same data, in one run, one engine at a time per query:
#     postgres    a throwaway PostgreSQL 15 cluster (port 5485), over the wire
#                 with psycopg; tables loaded with COPY, then TPC-H's primary
#                 keys, then VACUUM ANALYZE
#     sluice      a throwaway `sluice serve` (port 5484), over the wire with
#                 psycopg; tables (declared with their primary keys) loaded
#                 with COPY … FROM STDIN into Sluice's own storage
#     datafusion  the `datafusion` Python package (DataFusion 55, the release
#                 Sluice is built on) in-process, over the same Parquet files
#   Per query and engine: one untimed warm-up, then the median of RUNS timed
#   runs (results fetched to the client). A query past QUERY_TIMEOUT_S is
#   stopped and shown as >QUERY_TIMEOUT_S. Every engine's rows are compared
#   with the others' (row counts and values, 1e-6 tolerance for numbers); a
#   Sluice result that differs or fails shows MISMATCH / FAILED instead of
#   its speed-up, is listed under "problems", and the exit status is 1.
#   Prints the load times, then query, postgres_s, sluice_s, datafusion_s,
#   speedup_vs_pg (postgres_s / sluice_s), sluice/df (sluice_s /
#   datafusion_s) and a total over the queries Sluice answered correctly.
#   Compare ratios, not absolute numbers: the machines are small and noisy.
#
# How to run (as root, from anywhere):
#   bash benchmarks/tpch/run.sh              # SF 1, RUNS=3
#   SMOKE=1 bash benchmarks/tpch/run.sh      # SF 0.01, RUNS=1: under a minute
# Environment:
#   SF               scale factor (default 1; SMOKE=1: 0.01)
#   RUNS             timed runs per query and engine, median reported
#                    (default 3; SMOKE=1: 1)
#   QUERY_TIMEOUT_S  per-query limit in seconds (default 600)
#   QUERIES          a subset, e.g. q01,q06 (default all 22)
#   SLUICE_BIN       the sluice binary (default $CARGO_TARGET_DIR/release/sluice,
#                    or target/release/sluice; built if missing)
#   SLUICE_VENV      Python venv (default $HOME/.cache/sluice-venv; created if
#                    missing; requirements.txt installed into it if missing)
#   TPCH_DATA        data cache (default $HOME/.cache/sluice-tpch): sf$SF/csv
#                    and sf$SF/parquet, made once by tpchgen-cli and reused
#   PG_SETTINGS      postgres server options (default "-c shared_buffers=1GB
#                    -c work_mem=64MB -c max_wal_size=4GB")
#   PG_PORT, SLUICE_PORT  (default 5485, 5484)
#   OUT_FILE         the table is also written here (default /tmp/sluice-tpch.txt)
#
# Needs psql on PATH; installs the Debian package postgresql-15 if
# /usr/lib/postgresql/15/bin/postgres is missing. Postgres runs as the
# `postgres` OS user. SF 1 takes about 1.4 GB in the cache (CSV + Parquet)
# and 2-3 GB under /tmp while it runs (mostly Postgres).
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO_ROOT=$(pwd)

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    SF=${SF:-0.01}
    RUNS=${RUNS:-1}
else
    SF=${SF:-1}
    RUNS=${RUNS:-3}
fi
QUERY_TIMEOUT_S=${QUERY_TIMEOUT_S:-600}
QUERIES=${QUERIES:-}
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    SLUICE_BIN=${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}
else
    SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
fi
SLUICE_VENV=${SLUICE_VENV:-$HOME/.cache/sluice-venv}
TPCH_DATA=${TPCH_DATA:-$HOME/.cache/sluice-tpch}
PG_SETTINGS=${PG_SETTINGS:--c shared_buffers=1GB -c work_mem=64MB -c max_wal_size=4GB}
PG_PORT=${PG_PORT:-5485}
SLUICE_PORT=${SLUICE_PORT:-5484}
OUT_FILE=${OUT_FILE:-/tmp/sluice-tpch.txt}
PG_BIN=/usr/lib/postgresql/15/bin
PY="$SLUICE_VENV/bin/python"
HERE="$REPO_ROOT/benchmarks/tpch"

log() { echo "[tpch] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $SF =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SF must be a number, got '$SF'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$RUNS'"

# --- Python: psycopg, pyarrow, datafusion, tpchgen-cli ---------------------------
if [[ ! -x $PY ]]; then
    log "creating $SLUICE_VENV"
    python3 -m venv "$SLUICE_VENV"
fi
if ! "$PY" -c 'import psycopg, pyarrow, datafusion' 2>/dev/null || [[ ! -x $SLUICE_VENV/bin/tpchgen-cli ]]; then
    log "installing benchmarks/tpch/requirements.txt into $SLUICE_VENV"
    "$PY" -m pip install --quiet -r "$HERE/requirements.txt"
fi
DF_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("datafusion"))')
[[ $DF_VERSION == 55.* ]] || log "WARNING: datafusion $DF_VERSION in $SLUICE_VENV; Sluice is built on 55"

source "$REPO_ROOT/benchmarks/lib/side_by_side.sh"
ensure_ports_free
ensure_postgres15
ensure_sluice_bin
make_workdir tpch

# --- data ------------------------------------------------------------------------
DATA_DIR="$TPCH_DATA/sf$SF"
if [[ ! -f $DATA_DIR/.complete ]]; then
    log "generating TPC-H SF $SF with $("$SLUICE_VENV/bin/tpchgen-cli" --version) into $DATA_DIR"
    gen="$WORK/gen"
    mkdir -p "$gen"
    start=$(date +%s)
    "$SLUICE_VENV/bin/tpchgen-cli" csv -s "$SF" -o "$gen/csv"
    "$SLUICE_VENV/bin/tpchgen-cli" parquet -s "$SF" -o "$gen/parquet"
    "$SLUICE_VENV/bin/tpchgen-cli" --version >"$gen/GENERATOR"
    touch "$gen/.complete"
    mkdir -p "$TPCH_DATA"
    rm -rf "$DATA_DIR"
    mv "$gen" "$DATA_DIR"
    log "generated in $(( $(date +%s) - start )) s"
else
    log "reusing $DATA_DIR ($(cat "$DATA_DIR/GENERATOR" 2>/dev/null || echo 'generator unknown'))"
fi

# --- servers ---------------------------------------------------------------------
# shellcheck disable=SC2086
start_postgres $PG_SETTINGS
start_sluice

# --- queries ---------------------------------------------------------------------
status=0
"$PY" "$HERE/bench.py" \
    --data "$DATA_DIR" --queries "$HERE/queries" --sf "$SF" --runs "$RUNS" \
    --timeout "$QUERY_TIMEOUT_S" --only "$QUERIES" --out "$OUT_FILE" \
    --pg-dsn "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
    --sluice-dsn "host=127.0.0.1 port=$SLUICE_PORT user=sluice dbname=sluice" || status=$?

if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
    log "sluice is no longer running"
    sluice_log_tail
    status=1
elif grep -qiE '\b(ERROR|panick)' "$SLUICE_LOG"; then
    log "sluice log has errors (first 20 shown):"
    grep -iE '\b(ERROR|panick)' "$SLUICE_LOG" | head -n 20 >&2
fi
if [[ $status != 0 ]]; then
    die "the run found problems (listed above; table in $OUT_FILE)"
fi
log "table written to $OUT_FILE"
