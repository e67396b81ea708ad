#!/usr/bin/env bash
# Nexmark: Sluice's continuous queries vs Apache Flink, side by side, on the
# same events.
#
# What it measures
#   Sluice's Nexmark generator writes EVENTS events once (persons, auctions
#   and bids in the generator's 1:3:46 proportion) to CSV files. Both
#   engines read these files: Sluice after loading them into tables with a
#   watermark (date_time - 4 s; untimed), Flink (PyFlink's local
#   mini-cluster, streaming mode) through its filesystem/CSV connector with
#   the same watermark. Per query, events/s = the rows of the tables it reads
#   / the seconds of
#     Sluice: the CREATE MATERIALIZED VIEW statement (it returns once the
#             view holds the result of the table's rows);
#     Flink:  one job from submission to its end, into a blackhole sink.
#   Both results are then compared (closed windows only where windows are
#   emitted on watermarks). Queries Sluice refuses are still run on Flink,
#   the refusal is reported, and Flink's result is checked against the
#   same SQL run by Sluice as a one-off query. Parallelism 1 on both sides.
#
# How to run (from anywhere):
#   bash benchmarks/nexmark/run.sh            # EVENTS=1000000
#   SMOKE=1 bash benchmarks/nexmark/run.sh    # EVENTS=20000, 1-2 minutes
# Environment:
#   EVENTS       Nexmark events in all (default 1000000; rounded down to a
#                multiple of 50): 2% persons, 6% auctions, 92% bids
#   EVENT_RATE   events per second of event time (default 10000, the
#                generator's; 1000 with SMOKE=1 so that 10 s windows close)
#   QUERIES      comma-separated subset (default q0,q1,q2,q3,q4,q5,q5a,q7,q8)
#   SLUICE_BIN   the sluice binary (default target/release/sluice; built with
#                `cargo build --release -p sluice-server` if missing)
#   OUT_FILE     where the table is also written (default /tmp/sluice-nexmark.txt;
#                Sluice's server log is kept beside it as $OUT_FILE.sluice.log)
#   FLINK_VENV   Python venv for PyFlink and psycopg (default
#                ~/.cache/flink-venv; created, and apache-flink installed from
#                PyPI, if missing)
#   FLINK_VERSION  apache-flink version (default 2.3.0)
#   SLUICE_PORT  port of the throwaway Sluice server (default 5489)
#
# Needs: python3 (3.9-3.12, for PyFlink), Java 11+ (17 recommended) on PATH
# or in JAVA_HOME. Exits non-zero if a result differs or a run fails; a
# query Sluice refuses is reported, not a failure (unless its one-off
# result, checked instead, differs from Flink's).
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO_ROOT=$(pwd)

if [[ ${SMOKE:-0} == 1 ]]; then
    EVENTS=${EVENTS:-20000}
    EVENT_RATE=${EVENT_RATE:-1000}
else
    EVENTS=${EVENTS:-1000000}
    EVENT_RATE=${EVENT_RATE:-10000}
fi
QUERIES=${QUERIES:-q0,q1,q2,q3,q4,q5,q5a,q7,q8}
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
OUT_FILE=${OUT_FILE:-/tmp/sluice-nexmark.txt}
FLINK_VENV=${FLINK_VENV:-$HOME/.cache/flink-venv}
FLINK_VERSION=${FLINK_VERSION:-2.3.0}
PARALLELISM=1
SLUICE_PORT=${SLUICE_PORT:-5489}

log() { echo "[nexmark] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $EVENTS =~ ^[1-9][0-9]*$ ]] && (( EVENTS >= 50 )) || die "EVENTS must be an integer >= 50 (got '$EVENTS')"
[[ $EVENT_RATE =~ ^[1-9][0-9]*$ ]] || die "EVENT_RATE must be a positive integer (got '$EVENT_RATE')"
EVENTS=$(( EVENTS / 50 * 50 ))

# --- Java and the Flink environment ------------------------------------------
if [[ -n ${JAVA_HOME:-} ]]; then export PATH="$JAVA_HOME/bin:$PATH"; fi
command -v java >/dev/null || die "java not found (Flink needs Java 11+; apt-get install openjdk-17-jre-headless)"
log "$(java -version 2>&1 | head -n 1)"

if [[ ! -x "$FLINK_VENV/bin/python" ]]; then
    log "creating $FLINK_VENV"
    python3 -m venv "$FLINK_VENV"
fi
if ! "$FLINK_VENV/bin/python" - "$FLINK_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import psycopg, pyflink  # noqa: F401
sys.exit(version("apache-flink") != sys.argv[1])
EOF
then
    log "installing apache-flink==$FLINK_VERSION and psycopg into $FLINK_VENV"
    t0=$(date +%s)
    "$FLINK_VENV/bin/pip" install -q --upgrade pip
    "$FLINK_VENV/bin/pip" install -q "apache-flink==$FLINK_VERSION" "psycopg[binary]>=3.1"
    log "installed in $(( $(date +%s) - t0 )) s"
fi

# --- Sluice ------------------------------------------------------------------
if [[ ! -x "$SLUICE_BIN" ]]; then
    log "$SLUICE_BIN missing; building it"
    cargo build --release -p sluice-server
    [[ -x "$SLUICE_BIN" ]] || die "$SLUICE_BIN still missing after build"
fi
case "$SLUICE_BIN" in /*) ;; *) SLUICE_BIN="$REPO_ROOT/$SLUICE_BIN" ;; esac

WORK=$(mktemp -d /tmp/sluice-nexmark.XXXXXX)
SLUICE_PID=""
cleanup() {
    local rc=$?
    set +e
    if [[ -n "$SLUICE_PID" ]] && kill -0 "$SLUICE_PID" 2>/dev/null; then
        kill "$SLUICE_PID"
        for _ in $(seq 1 20); do kill -0 "$SLUICE_PID" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$SLUICE_PID" 2>/dev/null
        wait "$SLUICE_PID" 2>/dev/null
    fi
    cp "$WORK/sluice.log" "$OUT_FILE.sluice.log" 2>/dev/null
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/data" "$WORK/sluice-data"

# A server already on the port would answer the readiness check below.
if (exec 3<>"/dev/tcp/127.0.0.1/$SLUICE_PORT") 2>/dev/null; then
    die "port $SLUICE_PORT is already in use (set SLUICE_PORT)"
fi
log "starting $SLUICE_BIN on 127.0.0.1:$SLUICE_PORT"
"$SLUICE_BIN" serve --listen "127.0.0.1:$SLUICE_PORT" --data-dir "$WORK/sluice-data" \
    >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
ready=0
for _ in $(seq 1 120); do
    kill -0 "$SLUICE_PID" 2>/dev/null || { tail -n 40 "$WORK/sluice.log" >&2; die "sluice exited during startup"; }
    if "$FLINK_VENV/bin/python" -c "import psycopg; psycopg.connect(host='127.0.0.1', port=$SLUICE_PORT, user='sluice', dbname='sluice').close()" 2>/dev/null; then
        ready=1; break
    fi
    sleep 0.5
done
[[ $ready == 1 ]] || { tail -n 40 "$WORK/sluice.log" >&2; die "sluice not ready after 60 s"; }

# --- the benchmark -----------------------------------------------------------
log "EVENTS=$EVENTS EVENT_RATE=$EVENT_RATE QUERIES=$QUERIES parallelism=$PARALLELISM"
rc=0
PYTHONPATH="$REPO_ROOT/benchmarks/nexmark" "$FLINK_VENV/bin/python" \
    "$REPO_ROOT/benchmarks/nexmark/bench.py" \
    --port "$SLUICE_PORT" --events "$EVENTS" --event-rate "$EVENT_RATE" \
    --data-dir "$WORK/data" --out-file "$OUT_FILE" --parallelism "$PARALLELISM" \
    --queries "$QUERIES" 2> >(grep --line-buffered -v -E '^(WARNING: |SLF4J: )' >&2) || rc=$?
if [[ $rc != 0 ]]; then
    log "--- last 40 lines of the sluice log ---"
    tail -n 40 "$WORK/sluice.log" >&2 || true
fi
log "table written to $OUT_FILE"
exit "$rc"
