#!/usr/bin/env bash
# Writes with and without transactions: Sluice vs PostgreSQL 15 side by
# side (and, optionally, vs an earlier Sluice binary: does autocommit stay
# as fast as before transactions existed?).
#
# What it measures (pgbench, -M prepared, one row per INSERT)
#   insert   INSERT INTO events VALUES (…)                 autocommit
#   txn      BEGIN; INSERT INTO events …; INSERT INTO audit …;
#            SELECT count(*) FROM audit; COMMIT            two tables, one commit
#   each with 1 and 4 clients. pgbench's tps is statements (insert) or
#   transactions (txn) per second. Concurrent transactions only append, so
#   none conflicts; --max-tries retries a 40001 if one did, and failures are
#   reported. The ratio column is sluice / postgres; with SLUICE_BASELINE_BIN
#   a third server runs that binary and `vs_baseline` is sluice / baseline.
#   Compare ratios, not absolute numbers: the machines are small and noisy.
#
# How to run (as root, from anywhere):
#   bash benchmarks/transactions/run.sh
# Environment:
#   DURATION             seconds per pgbench run (default 10)
#   SLUICE_BIN           the sluice binary (default target/release/sluice)
#   SLUICE_BASELINE_BIN  an earlier sluice binary to compare with (optional)
#   OUT_FILE             the result table is also written here
#                        (default /tmp/sluice-transactions.txt)
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO_ROOT=$(pwd)

DURATION=${DURATION:-10}
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
SLUICE_BASELINE_BIN=${SLUICE_BASELINE_BIN:-}
OUT_FILE=${OUT_FILE:-/tmp/sluice-transactions.txt}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=5499
SLUICE_PORT=5498
BASELINE_PORT=5497
PGBENCH=/usr/bin/pgbench
command -v "$PGBENCH" >/dev/null 2>&1 || PGBENCH=pgbench

log() { echo "[transactions] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

source "$REPO_ROOT/benchmarks/lib/side_by_side.sh"
ensure_postgres15
ensure_sluice_bin
make_workdir transactions
SCRIPTS="$WORK/scripts"
mkdir -p "$SCRIPTS"
start_postgres -c max_connections=50
start_sluice

declare -A CONN=(
    [postgres]="$PG_PORT postgres postgres"
    [sluice]="$SLUICE_PORT sluice sluice"
)
TARGETS=(postgres sluice)

BASELINE_PID=""
if [[ -n $SLUICE_BASELINE_BIN ]]; then
    log "starting the baseline $SLUICE_BASELINE_BIN on 127.0.0.1:$BASELINE_PORT"
    mkdir -p "$WORK/baseline-data"
    "$SLUICE_BASELINE_BIN" serve --listen "127.0.0.1:$BASELINE_PORT" \
        --data-dir "$WORK/baseline-data" >"$WORK/baseline.log" 2>&1 &
    BASELINE_PID=$!
    # The library's trap stops the other two servers.
    trap 'kill "$BASELINE_PID" 2>/dev/null; wait "$BASELINE_PID" 2>/dev/null; cleanup' EXIT
    for _ in $(seq 1 120); do
        psql -h 127.0.0.1 -p "$BASELINE_PORT" -U sluice -d sluice -Atc 'select 1' >/dev/null 2>&1 && break
        kill -0 "$BASELINE_PID" 2>/dev/null || die "the baseline exited during startup"
        sleep 0.5
    done
    CONN[baseline]="$BASELINE_PORT sluice sluice"
    TARGETS+=(baseline)
fi

run_psql() { # target sql...
    local port user db
    read -r port user db <<<"${CONN[$1]}"; shift
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -At "$@"
}

for t in "${TARGETS[@]}"; do
    run_psql "$t" -c "CREATE TABLE events (id BIGINT, client INT, payload TEXT)" >/dev/null
    run_psql "$t" -c "CREATE TABLE audit (id BIGINT, note TEXT)" >/dev/null
done

printf '\\set id random(1, 1000000000)\nINSERT INTO events VALUES (:id, :client_id, '"'"'payload'"'"');\n' \
    >"$SCRIPTS/insert.sql"
cat >"$SCRIPTS/txn.sql" <<'EOF'
\set id random(1, 1000000000)
BEGIN;
INSERT INTO events VALUES (:id, :client_id, 'payload');
INSERT INTO audit VALUES (:id, 'inserted');
SELECT count(*) FROM audit;
COMMIT;
EOF

# Runs one pgbench; prints "tps failed_transactions", or FAILED.
run_pgbench() { # target script clients
    local t=$1 script=$2 c=$3 j port user db rc=0
    j=$(( c < 2 ? c : 2 ))
    read -r port user db <<<"${CONN[$t]}"
    local out="$WORK/pgbench.$t.$script.$c"
    timeout $((DURATION + 60)) "$PGBENCH" -n -h 127.0.0.1 -p "$port" -U "$user" \
        -f "$SCRIPTS/$script.sql" -M prepared --max-tries=100 -c "$c" -j "$j" -T "$DURATION" "$db" \
        >"$out.stdout" 2>"$out.stderr" || rc=$?
    local tps failed
    tps=$(grep -E '^tps = ' "$out.stdout" | head -n1 | sed -E 's/^tps = ([0-9.]+).*/\1/' || true)
    failed=$(grep -E '^number of failed transactions' "$out.stdout" | sed -E 's/.*: ([0-9]+).*/\1/' || true)
    if [[ $rc != 0 || -z $tps ]]; then
        log "FAILED: $t $script -c $c (exit $rc)"
        tail -n 20 "$out.stderr" >&2 || true
        echo FAILED
    else
        echo "$tps ${failed:-0}"
    fi
}

fmt() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

ROWS_OUT=()
for script in insert txn; do
    for c in 1 4; do
        declare -A TPS=() FAILED=()
        for t in "${TARGETS[@]}"; do
            log "pgbench $script -c $c on $t (${DURATION}s)"
            read -r TPS[$t] FAILED[$t] <<<"$(run_pgbench "$t" "$script" "$c")"
            [[ ${TPS[$t]} == FAILED ]] && die "pgbench failed on $t"
        done
        row="$script $c $(fmt "${TPS[postgres]}") $(fmt "${TPS[sluice]}") $(ratio "${TPS[sluice]}" "${TPS[postgres]}") ${FAILED[sluice]}"
        if [[ -n $SLUICE_BASELINE_BIN ]]; then
            row+=" $(fmt "${TPS[baseline]}") $(ratio "${TPS[sluice]}" "${TPS[baseline]}")"
        fi
        ROWS_OUT+=("$row")
    done
done

# Every transaction's two rows landed together on Sluice.
events=$(run_psql sluice -c "SELECT count(*) FROM events e JOIN audit a ON e.id = a.id")
audit=$(run_psql sluice -c "SELECT count(*) FROM audit")
[[ $events == "$audit" ]] || die "sluice: $audit audit rows but $events with their event"

{
    echo "# transactions: sluice vs postgres 15, DURATION=${DURATION}s, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    header="script clients postgres_tps sluice_tps ratio sluice_failed"
    [[ -n $SLUICE_BASELINE_BIN ]] && header+=" baseline_tps vs_baseline"
    # shellcheck disable=SC2086
    printf '%-7s %7s %12s %10s %6s %13s %12s %11s\n' $header
    for r in "${ROWS_OUT[@]}"; do
        # shellcheck disable=SC2086
        printf '%-7s %7s %12s %10s %6s %13s %12s %11s\n' $r
    done
} | tee "$OUT_FILE"
