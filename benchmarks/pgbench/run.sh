#!/usr/bin/env bash
# pgbench: Sluice vs PostgreSQL 15, side by side, on the same machine.
#
# What it measures
#   Per-query round-trip throughput (queries/second as reported by pgbench's
#   "tps", one query per transaction) over the Postgres wire protocol, for:
#     select1.sql  SELECT 1;                        -M simple and -M prepared
#                  (pure protocol + planning overhead, no data)
#     point.sql    SELECT val FROM kv WHERE id = :id -M prepared
#                  (point lookup on a 1M-row table kv(id BIGINT, val TEXT):
#                   in Postgres `id` is the primary key (a B-tree index); in
#                   Sluice the rows are written in id order, so each Parquet
#                   row group and page carries a narrow id range in its
#                   statistics and page index, and the scan prunes to them)
#   each with 1 and 16 clients (-j = min(clients, 2)), against a throwaway
#   PostgreSQL 15 cluster (port 5499) and a throwaway `sluice serve` (port 5498).
#   The ratio column is sluice_qps / postgres_qps; compare ratios, not the
#   absolute numbers, since the benchmark machines are small and noisy.
#
# How to run (as root, from anywhere):
#   bash benchmarks/pgbench/run.sh
# Environment:
#   DURATION   seconds per pgbench run (default 10; 12 runs in all)
#   ROWS       rows in kv (default 1000000)
#   SLUICE_BIN path to the sluice binary (default target/release/sluice;
#              built with `cargo build --release -p sluice-server` if missing)
#   OUT_FILE   where the result table is also written (default /tmp/sluice-pgbench.txt)
#
# Needs: psql and pgbench on PATH (pgbench at /usr/bin/pgbench); installs the
# Debian package postgresql-15 if /usr/lib/postgresql/15/bin/postgres is missing.
# The Postgres server runs as the `postgres` OS user. No pgbench -i is used.
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO_ROOT=$(pwd)

DURATION=${DURATION:-10}
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
OUT_FILE=${OUT_FILE:-/tmp/sluice-pgbench.txt}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=5499
SLUICE_PORT=5498
ROWS=${ROWS:-1000000}
PGBENCH=/usr/bin/pgbench
command -v "$PGBENCH" >/dev/null 2>&1 || PGBENCH=pgbench

log() { echo "[pgbench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

source "$REPO_ROOT/benchmarks/lib/side_by_side.sh"
ensure_postgres15
command -v "$PGBENCH" >/dev/null || die "pgbench not found"
ensure_sluice_bin
make_workdir pgbench
SCRIPTS="$WORK/scripts"
mkdir -p "$SCRIPTS"
start_postgres -c max_connections=50
start_sluice

# --- data --------------------------------------------------------------------
# Target table: name -> "port user db"
declare -A CONN=(
    [postgres]="$PG_PORT postgres postgres"
    [sluice]="$SLUICE_PORT sluice sluice"
)
TARGETS=(postgres sluice)

run_psql() { # target sql...
    local port user db
    read -r port user db <<<"${CONN[$1]}"; shift
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -At "$@"
}

# One statement that both accept: a scalar-returning function aliased in FROM
# names its column after the alias in Postgres, and DataFusion's
# generate_series column is already called `value`.
LOAD_PORTABLE="INSERT INTO kv SELECT value, md5(value::text) FROM generate_series(1, $ROWS) AS value"
LOAD_PG="INSERT INTO kv SELECT value, md5(value::text) FROM generate_series(1, $ROWS) AS g(value)"
LOAD_DF="INSERT INTO kv SELECT value, md5(CAST(value AS TEXT)) FROM generate_series(1, $ROWS)"

for t in "${TARGETS[@]}"; do
    log "loading $ROWS rows into kv on $t"
    if [[ $t == postgres ]]; then key=" PRIMARY KEY"; else key=""; fi
    run_psql "$t" -c "CREATE TABLE kv (id BIGINT$key, val TEXT)" >/dev/null
    if ! err=$(run_psql "$t" -c "$LOAD_PORTABLE" 2>&1 >/dev/null); then
        log "portable load failed on $t ($err); trying the $t-specific form"
        if [[ $t == postgres ]]; then alt=$LOAD_PG; else alt=$LOAD_DF; fi
        run_psql "$t" -c "$alt" >/dev/null || { [[ $t == sluice ]] && sluice_log_tail; die "cannot load kv on $t"; }
    fi
    [[ $t == postgres ]] && run_psql "$t" -c "VACUUM ANALYZE kv" >/dev/null
    n=$(run_psql "$t" -c "SELECT count(*) FROM kv")
    [[ $n == "$ROWS" ]] || die "kv on $t has $n rows, expected $ROWS"
    v=$(run_psql "$t" -c "SELECT val FROM kv WHERE id = 42")
    [[ $v == "$(printf 42 | md5sum | cut -d' ' -f1)" ]] || die "kv on $t: id 42 has val '$v'"
done

# --- pgbench scripts ---------------------------------------------------------
printf 'SELECT 1;\n' >"$SCRIPTS/select1.sql"
printf '\\set id random(1, %d)\nSELECT val FROM kv WHERE id = :id;\n' "$ROWS" >"$SCRIPTS/point.sql"

# script:protocol
CASES=(select1:simple select1:prepared point:prepared)
CLIENTS=(1 16)

# Runs one pgbench; prints the tps figure, or FAILED (with the error on stderr).
run_pgbench() { # target script protocol clients
    local t=$1 script=$2 proto=$3 c=$4 j port user db rc=0
    j=$(( c < 2 ? c : 2 ))
    read -r port user db <<<"${CONN[$t]}"
    local out="$WORK/pgbench.$t.$script.$proto.$c"
    # NB: pgbench's -d means --debug; the database name is the positional argument.
    timeout $((DURATION + 60)) "$PGBENCH" -n -h 127.0.0.1 -p "$port" -U "$user" \
        -f "$SCRIPTS/$script.sql" -M "$proto" -c "$c" -j "$j" -T "$DURATION" "$db" \
        >"$out.stdout" 2>"$out.stderr" || rc=$?
    local tps
    tps=$(grep -E '^tps = ' "$out.stdout" | grep 'without initial connection time' | head -n1 || true)
    [[ -n $tps ]] || tps=$(grep -E '^tps = ' "$out.stdout" | head -n1 || true)
    tps=$(sed -E 's/^tps = ([0-9.]+).*/\1/' <<<"$tps")
    if [[ $rc != 0 || -z $tps ]]; then
        log "FAILED: $t $script -M $proto -c $c (exit $rc)"
        log "--- pgbench stderr ---"; tail -n 30 "$out.stderr" >&2 || true
        log "--- pgbench stdout (tail) ---"; tail -n 10 "$out.stdout" >&2 || true
        [[ $t == sluice ]] && sluice_log_tail
        echo FAILED
    else
        echo "$tps"
    fi
}

fmt() { [[ $1 == FAILED ]] && echo FAILED || awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

ROWS_OUT=()
for case in "${CASES[@]}"; do
    script=${case%%:*} proto=${case##*:}
    for c in "${CLIENTS[@]}"; do
        log "pgbench $script -M $proto -c $c on postgres (${DURATION}s)"
        pg=$(run_pgbench postgres "$script" "$proto" "$c")
        log "pgbench $script -M $proto -c $c on sluice (${DURATION}s)"
        sl=$(run_pgbench sluice "$script" "$proto" "$c")
        if [[ $pg == FAILED || $sl == FAILED ]]; then
            ratio=FAILED
        else
            ratio=$(awk -v a="$sl" -v b="$pg" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
        fi
        ROWS_OUT+=("$script $proto $c $(fmt "$pg") $(fmt "$sl") $ratio")
    done
done

# --- report ------------------------------------------------------------------
{
    echo "# pgbench: sluice vs postgres 15, DURATION=${DURATION}s, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '%-8s %-9s %7s %13s %13s %6s\n' script protocol clients postgres_qps sluice_qps ratio
    for r in "${ROWS_OUT[@]}"; do
        # shellcheck disable=SC2086
        printf '%-8s %-9s %7s %13s %13s %6s\n' $r
    done
} | tee "$OUT_FILE"

if grep -qiE '\b(ERROR|WARN|panick)' "$SLUICE_LOG"; then
    log "sluice log has warnings/errors (first 20 shown):"
    grep -iE '\b(ERROR|WARN|panick)' "$SLUICE_LOG" | head -n 20 >&2
fi
