#!/usr/bin/env bash
# Runs real Postgres clients against a `sluice serve` started here: psql,
# psycopg 3 (with pgvector's adapter), psycopg2, asyncpg, SQLAlchemy 2,
# pgjdbc, node-postgres, SUBSCRIBE from psycopg and psql, the
# stock sqllogictest CLI (simple and
# extended protocol) over the same .slt files the Rust tests run, the
# everyday ones of those files against a real PostgreSQL 15
# (scripts/slt-on-postgres.sh), the
# crash check (SIGKILL during a stream of inserts, then restart and count),
# the checkpoint check (kill -9 and injected downstream failures of
# continuous queries over EMBED: exactly-once views, no inference re-run),
# the NATS check (a JetStream source and sink on a local nats-server -js
# under kill -9: each message delivered once),
# the S3 check (a data directory, external tables and COPY TO on a local moto
# S3 server, a restart, unreachable endpoint and missing bucket errors),
# the fault check (S3 errors, lost and delayed responses injected by a proxy
# in front of moto, kill -9 during UPDATE/DELETE/ALTER/compaction/COPY, and
# a full disk on a tmpfs where mounting one is allowed: no acknowledged row
# lost, no table half-changed, every error with a SQLSTATE),
# the model check (CREATE MODEL without or with a broken ONNX Runtime,
# EMBED and ML_PREDICT through psycopg; it starts its own servers), and the
# media check (JPEG, PNG and WAV files read through --object-root, locally
# and on moto S3, against Pillow and numpy; IMAGE/TENSOR/OBJECT_REF columns
# across a restart; paths outside the root refused), and the TLS check
# (certificates made by openssl; psql, psycopg and pgjdbc with sslmode=require and
# verify-full; --tls-required refusing plain clients), and the roles check
# (CREATE ROLE logins over SCRAM, privileges for model creation and server
# files, a restart), and the fuzz check (seeded SQL from the .slt corpus,
# mutated or generated, through psycopg, and malformed Postgres protocol
# messages on raw sockets, against a server of its own: no crash, hang or
# panic; internal errors are printed), and the load check (16 asyncpg
# clients for 8 s of single-row INSERTs, point queries, range aggregates and
# EMBED against a server of its own with --memory-limit: no error, every
# acknowledged insert there, memory under the limit; the CI round of
# benchmarks/concurrency).
# Usage: scripts/client-checks.sh PATH_TO_SLUICE_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_BIN="$1"
VENV="${SLUICE_VENV:-$PWD/.venv}"
PORT="${SLUICE_TEST_PORT:-55433}"
WORK="$(mktemp -d)"
SERVER_PID=""
passed=0
failed=0

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

# The .slt files read the media fixtures as `${MEDIA}` (environment
# variable for the stock CLI), which the server may read as its object root.
export MEDIA="$PWD/sql-tests/fixtures/media"

start_server() {
  rm -rf "$WORK/data"
  "$SLUICE_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --object-root "$MEDIA" \
    >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if psql -h 127.0.0.1 -p "$PORT" -U sluice -d sluice -XAtqc 'select 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "sluice did not start; log:"; tail -n 50 "$WORK/server.log"
  return 1
}

check() {
  local name="$1"; shift
  if "$@"; then
    echo "PASS $name"; passed=$((passed + 1))
  else
    echo "FAIL $name"; failed=$((failed + 1))
  fi
}

psql_check() {
  # \watch titles its rounds with the time: masked to compare.
  psql -h 127.0.0.1 -p "$PORT" -U sluice -d sluice -X -q -f sql-tests/clients/check.psql 2>&1 |
    sed -E 's/^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} [0-9]{4} \(every 1s\)$/<time> (every 1s)/' \
      >"$WORK/psql.out" || true
  if diff -u sql-tests/clients/check.psql.expected "$WORK/psql.out"; then return 0; fi
  return 1
}

slt_cli() {
  local engine="$1" labels=(--label wire)
  if [ "$engine" = postgres-extended ]; then labels+=(--label extended); fi
  stop_server
  start_server
  sqllogictest --engine "$engine" --host 127.0.0.1 --port "$PORT" --user sluice --db sluice \
    "${labels[@]}" 'sql-tests/slt/**/*.slt'
}

start_server
check "psql script" psql_check
check "psycopg 3" "$VENV/bin/python" sql-tests/clients/psycopg_check.py 127.0.0.1 "$PORT"
check "psycopg2 (client-side parameters, execute_values, copy_expert, pgvector)" \
  "$VENV/bin/python" sql-tests/clients/psycopg2_check.py 127.0.0.1 "$PORT"
check "asyncpg (binary protocol, prepare, copy_records_to_table, copy_from_query, pgvector)" \
  "$VENV/bin/python" sql-tests/clients/asyncpg_check.py 127.0.0.1 "$PORT"
check "SQLAlchemy 2 Core and ORM with pgvector's Vector" \
  "$VENV/bin/python" sql-tests/clients/sqlalchemy_check.py 127.0.0.1 "$PORT"
check "pgjdbc (named binary statements, batches, DatabaseMetaData, transactions)" \
  java -cp /usr/share/java/postgresql.jar sql-tests/clients/jdbc/JdbcCheck.java 127.0.0.1 "$PORT"
check "node-postgres (untyped parameters, named queries, Pool, transactions)" \
  node sql-tests/clients/node/pg_check.js 127.0.0.1 "$PORT"
check "SUBSCRIBE: psycopg DECLARE/FETCH, psql COPY (SUBSCRIBE …) TO STDOUT, cancel and disconnect" \
  "$VENV/bin/python" sql-tests/clients/subscribe_check.py 127.0.0.1 "$PORT"
check "server survives SIGTERM-free run" kill -0 "$SERVER_PID"
check "sqllogictest CLI, simple protocol" slt_cli postgres
check "sqllogictest CLI, extended protocol" slt_cli postgres-extended
check "everyday .slt suites against PostgreSQL 15 (their expected outputs are Postgres' own)" \
  bash scripts/slt-on-postgres.sh
stop_server
check "crash safety: SIGKILL during inserts, 20 times, then 10 times into a table with an hnsw index" \
  "$VENV/bin/python" sql-tests/clients/crash_check.py "$SLUICE_BIN" "$PORT" 20
check "regional checkpoints: 20 kill -9 of views over EMBED, 20 downstream failures, no model call re-run" \
  "$VENV/bin/python" sql-tests/clients/checkpoint_check.py "$SLUICE_BIN" "$PORT" 20
check "NATS JetStream source -> EMBED -> NATS sink under 10 kill -9: each message out exactly once" \
  "$VENV/bin/python" sql-tests/clients/nats_check.py "$SLUICE_BIN" "$PORT" 10
check "S3 data directory, external tables and COPY TO on a local moto server" \
  "$VENV/bin/python" sql-tests/clients/s3_check.py "$SLUICE_BIN"
check "faults: S3 errors and lost responses via a proxy, kill -9 during rewrites and COPY, disk full" \
  "$VENV/bin/python" sql-tests/clients/fault_check.py "$SLUICE_BIN"
check "model inference: missing or broken ONNX Runtime, EMBED, ML_PREDICT" \
  "$VENV/bin/python" sql-tests/clients/model_check.py "$SLUICE_BIN"
check "media: images, audio and tensors from object roots (local and S3) vs Pillow" \
  "$VENV/bin/python" sql-tests/clients/media_check.py "$SLUICE_BIN"
check "TLS: sslmode=require and verify-full from psql, psycopg and pgjdbc, --tls-required, bad certificates" \
  "$VENV/bin/python" sql-tests/clients/tls_check.py "$SLUICE_BIN"
check "roles: CREATE/ALTER/DROP ROLE with SCRAM logins, privileges granted by predefined roles, a restart" \
  "$VENV/bin/python" sql-tests/clients/roles_check.py "$SLUICE_BIN"
check "fuzzing: 1500 seeded SQL statements and 1500 malformed wire messages, no crash, hang or panic" \
  "$VENV/bin/python" sql-tests/clients/fuzz_check.py "$SLUICE_BIN" "$PORT"
check "load: 16 clients for 8 s of INSERT, point queries, scans and EMBED; 0 errors, no row lost, memory under --memory-limit" \
  "$VENV/bin/python" sql-tests/clients/load_check.py "$SLUICE_BIN" 0
# A panic while planning (injected: the first statement planned panics)
# costs that statement an XX000 error; the same connection and new ones
# go on.
panic_check() {
  local port dir="$WORK/panic-data" out="$WORK/panic.out" pid status=0
  # A port free now: a fixed one can be some client's ephemeral port.
  port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SLUICE_FAILPOINTS='plan-statement=1*panic' "$SLUICE_BIN" serve --listen "127.0.0.1:$port" \
    --data-dir "$dir" >>"$WORK/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
  printf '\\set VERBOSITY sqlstate\nSELECT 41 + 1 AS first;\nSELECT 42 + 1 AS second;\n' |
    psql -h 127.0.0.1 -p "$port" -U sluice -d sluice -XAtq >"$out" 2>&1 || true
  psql -h 127.0.0.1 -p "$port" -U sluice -d sluice -XAtqc 'SELECT 44' >>"$out" 2>&1 || status=1
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  cat "$out"
  [ "$status" = 0 ] && [ "$(cat "$out")" = "$(printf 'ERROR:  XX000\n43\n44')" ]
}
check "a panic while planning costs the statement (XX000), not the connection" panic_check
start_server
# Graceful shutdown: SIGTERM ends the server with exit status 0.
graceful() {
  kill -TERM "$SERVER_PID"
  local status=0
  wait "$SERVER_PID" || status=$?
  SERVER_PID=""
  [ "$status" = 0 ]
}
check "graceful shutdown on SIGTERM" graceful

echo "clients: $passed passed, $failed failed"
echo "$passed $failed" > "${CLIENT_COUNTS_FILE:-/dev/null}"
if [ "$failed" != 0 ]; then
  echo "--- server log tail"; tail -n 40 "$WORK/server.log"
  exit 1
fi
