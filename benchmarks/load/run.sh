#!/usr/bin/env bash
# Bulk load: Sluice vs PostgreSQL 15, side by side, on the same machine.
#
# What it measures
#   Rows/second loading ROWS rows into an empty table
#     t (id BIGINT, name TEXT, score DOUBLE PRECISION, created TIMESTAMP, flag BOOLEAN)
#   over the Postgres wire protocol, timed end to end around one psql command:
#     copy_text     psql -c "\copy t FROM 't.tsv'"                   (COPY ... FROM STDIN, text)
#     copy_csv      psql -c "\copy t FROM 't.csv' WITH (FORMAT csv)" (COPY ... FROM STDIN, CSV)
#     insert_bN     psql -f inserts.sql: INSERT INTO t VALUES (...),... of BATCH
#                   rows each, sent one after another over one connection,
#                   each its own (autocommit) transaction
#   against a throwaway PostgreSQL 15 cluster (port 5496, stock settings) and a
#   throwaway `sluice serve` (port 5495), the same files for both. After every
#   load both engines must give the answer the generator computed for
#   count(*), sum(id), count(score), the sum of the scores in cents, the count
#   of true flags, sum(length(name)) and the sum of created as epoch seconds
#   (the run fails otherwise). Then the table's size on disk:
#   pg_total_relation_size('t') against the bytes of the files under Sluice's
#   <data dir>/tables/public/t/ (Parquet data files plus JSON manifests).
#   The table is dropped and recreated before every load.
#   ratio = sluice / postgres (higher is better for Sluice in rows/s, lower in
#   size); compare ratios, not absolute numbers.
#
# How to run (as root, from anywhere):
#   bash benchmarks/load/run.sh
# Environment:
#   ROWS        rows to load (default 1000000)
#   BATCH       rows per INSERT statement (default 1000)
#   SLUICE_BIN  path to the sluice binary (default target/release/sluice;
#               built with `cargo build --release -p sluice-server` if missing)
#   OUT_FILE    where the result tables are also written (default /tmp/sluice-load.txt)
#   LOAD_TIMEOUT  seconds allowed per load (default 1800)
#
# Needs: psql and python3 on PATH; installs the Debian package postgresql-15
# if /usr/lib/postgresql/15/bin/postgres is missing. The Postgres server runs
# as the `postgres` OS user.
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO_ROOT=$(pwd)

ROWS=${ROWS:-1000000}
BATCH=${BATCH:-1000}
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
OUT_FILE=${OUT_FILE:-/tmp/sluice-load.txt}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-1800}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=5496
SLUICE_PORT=5495

log() { echo "[load] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer (got '$ROWS')"
[[ $BATCH =~ ^[1-9][0-9]*$ ]] || die "BATCH must be a positive integer (got '$BATCH')"

source "$REPO_ROOT/benchmarks/lib/side_by_side.sh"
ensure_postgres15
command -v python3 >/dev/null || die "python3 not found"
ensure_sluice_bin
make_workdir load
DATA="$WORK/data"
mkdir -p "$DATA"

# --- data (before the servers start, so generation does not compete) ---------
log "generating $ROWS rows (TSV, CSV, INSERTs of $BATCH rows) in $DATA"
python3 "$REPO_ROOT/benchmarks/load/gen.py" "$ROWS" "$BATCH" "$DATA"
EXPECTED=$(cat "$DATA/expected.txt")
log "files: $(cd "$DATA" && du -h t.tsv t.csv inserts.sql | awk '{printf "%s %s  ", $2, $1}')"

start_postgres
start_sluice

# --- helpers -----------------------------------------------------------------
# Target name -> "port user db"
declare -A CONN=(
    [postgres]="$PG_PORT postgres postgres"
    [sluice]="$SLUICE_PORT sluice sluice"
)

psql_to() { # target psql-args...
    local port user db
    read -r port user db <<<"${CONN[$1]}"; shift
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -At "$@"
}

CREATE_SQL="CREATE TABLE t (id BIGINT, name TEXT, score DOUBLE PRECISION, created TIMESTAMP, flag BOOLEAN)"
# Every value takes part: score as exact cents, created as epoch seconds.
CHECK_SQL="SELECT count(*), sum(id), count(score), sum(CAST(round(score * 100) AS BIGINT)), \
sum(CASE WHEN flag THEN 1 ELSE 0 END), sum(length(name)), \
sum(CAST(extract(epoch FROM created) AS BIGINT)) FROM t"

WORKLOADS=(copy_text copy_csv "insert_b$BATCH")

now_ns() { date +%s%N; }

# Bytes of the files (not directories) under a directory, or 0 if missing.
file_bytes() { # dir [find-args...]
    local dir=$1; shift
    [[ -d $dir ]] || { echo 0; return; }
    find "$dir" -type f "$@" -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'
}

# Loads one workload into one target from an empty table, checks the result
# and records the size. Prints "rows_per_s size_bytes" or "FAILED FAILED".
# Sluice's size line also carries "parquet_bytes manifest_bytes files".
run_load() { # target workload
    local t=$1 w=$2 out="$WORK/load.$1.$2" rc=0 t0 t1 got
    if ! psql_to "$t" -c "DROP TABLE IF EXISTS t" >"$out.reset" 2>&1 \
        || ! psql_to "$t" -c "$CREATE_SQL" >>"$out.reset" 2>&1; then
        log "ERROR: $t: cannot recreate t:"; cat "$out.reset" >&2
        [[ $t == sluice ]] && sluice_log_tail
        echo "FAILED FAILED"; return
    fi
    # Untimed: start every Postgres load from a clean checkpoint, so a
    # checkpoint owed by the previous load does not land in this one.
    [[ $t == postgres ]] && psql_to postgres -c CHECKPOINT >/dev/null
    local -a args
    case $w in
        copy_text) args=(-c "\\copy t FROM '$DATA/t.tsv'") ;;
        copy_csv) args=(-c "\\copy t FROM '$DATA/t.csv' WITH (FORMAT csv)") ;;
        insert_b*) args=(-f "$DATA/inserts.sql") ;;
    esac
    local port user db
    read -r port user db <<<"${CONN[$t]}"
    t0=$(now_ns)
    timeout "$LOAD_TIMEOUT" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$db" \
        "${args[@]}" >"$out.stdout" 2>"$out.stderr" || rc=$?
    t1=$(now_ns)
    if [[ $rc != 0 ]]; then
        local why="exit $rc"
        [[ $rc == 124 ]] && why="timed out after ${LOAD_TIMEOUT}s"
        log "ERROR: $w on $t failed ($why): psql ${args[*]}"
        tail -n 20 "$out.stderr" >&2 || true
        [[ $t == sluice ]] && sluice_log_tail
        echo "FAILED FAILED"; return
    fi
    got=$(psql_to "$t" -c "$CHECK_SQL" 2>&1) || true
    if [[ $got != "$EXPECTED" ]]; then
        log "ERROR: $w on $t loaded the wrong rows"
        log "  check:    $CHECK_SQL"
        log "  expected: $EXPECTED   (count|sum(id)|count(score)|score cents|true flags|sum(length(name))|sum(epoch))"
        log "  got:      $got"
        [[ $t == sluice ]] && sluice_log_tail
        echo "FAILED FAILED"; return
    fi
    local rps size
    rps=$(awk -v r="$ROWS" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", r / (ns / 1e9) }')
    if [[ $t == postgres ]]; then
        size=$(psql_to postgres -c "SELECT pg_total_relation_size('t')")
        echo "$rps $size"
    else
        local dir="$SLUICE_DATA/tables/public/t" files
        [[ -d $dir ]] || { log "ERROR: $dir missing after the load; data dir holds:";
            find "$SLUICE_DATA" -maxdepth 4 >&2; echo "$rps FAILED"; return; }
        files=$(find "$dir" -type f | wc -l)
        echo "$rps $(file_bytes "$dir") $(file_bytes "$dir" -name '*.parquet') $(file_bytes "$dir" -path '*/_manifest/*') $files"
    fi
    log "$w on $t: $rps rows/s ($(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }') s)"
}

fmt_ratio() { # a b
    if [[ $1 == FAILED || $2 == FAILED ]]; then echo FAILED; else
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; fi
}
mib() { [[ $1 == FAILED ]] && echo FAILED || awk -v x="$1" 'BEGIN { printf "%.2f", x / 1048576 }'; }

# --- loads -------------------------------------------------------------------
SPEED_OUT=()
SIZE_OUT=()
for w in "${WORKLOADS[@]}"; do
    log "$w: loading $ROWS rows into postgres"
    read -r pg_rps pg_size <<<"$(run_load postgres "$w")"
    log "$w: loading $ROWS rows into sluice"
    read -r sl_rps sl_size sl_parquet sl_manifest sl_files <<<"$(run_load sluice "$w")"
    SPEED_OUT+=("$w $ROWS $pg_rps $sl_rps $(fmt_ratio "$sl_rps" "$pg_rps")")
    SIZE_OUT+=("$w $(mib "$pg_size") $(mib "$sl_size") $(fmt_ratio "$sl_size" "$pg_size") \
$(mib "${sl_parquet:-FAILED}") $(mib "${sl_manifest:-FAILED}") ${sl_files:-FAILED}")
done

# --- report ------------------------------------------------------------------
{
    echo "# bulk load: sluice vs postgres 15, ROWS=$ROWS, BATCH=$BATCH, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '%-12s %8s %16s %14s %6s\n' workload rows postgres_rows_s sluice_rows_s ratio
    for r in "${SPEED_OUT[@]}"; do
        # shellcheck disable=SC2086
        printf '%-12s %8s %16s %14s %6s\n' $r
    done
    echo "# size of t after each load, MiB: postgres = pg_total_relation_size('t');"
    echo "# sluice = files under tables/public/t/ (parquet data + json manifests); ratio = sluice / postgres"
    printf '%-12s %12s %10s %6s %15s %16s %12s\n' workload postgres_mib sluice_mib ratio \
        sluice_parquet sluice_manifests sluice_files
    for r in "${SIZE_OUT[@]}"; do
        # shellcheck disable=SC2086
        printf '%-12s %12s %10s %6s %15s %16s %12s\n' $r
    done
} | tee "$OUT_FILE"

if grep -qiE '\b(ERROR|WARN|panick)' "$SLUICE_LOG"; then
    log "sluice log has warnings/errors (first 20 shown):"
    grep -iE '\b(ERROR|WARN|panick)' "$SLUICE_LOG" | head -n 20 >&2
fi
if grep -q FAILED "$OUT_FILE"; then
    die "a load failed or loaded the wrong rows (FAILED above); see the errors logged before the table"
fi
