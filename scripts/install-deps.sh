#!/usr/bin/env bash
# Installs everything Sluice's tests and clients need on a fresh Debian
# machine with the Rust toolchain: psql (client checks), PostgreSQL 15 (the
# everyday .slt suites' expected outputs checked against it), nats-server (the
# NATS connector's check), a JDK with pgjdbc and Node.js with node-postgres
# (driver checks), openssl (the TLS check's certificates), a Python virtual
# environment with psycopg 3 (driver checks) and moto (a local S3 server
# for the S3 data-directory check), the stock sqllogictest CLI, and
# ONNX Runtime plus the models (scripts/install-models.sh).
# Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v psql >/dev/null 2>&1; then
  echo "==> installing the PostgreSQL client (psql)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
fi

if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  echo "==> installing PostgreSQL 15 (the everyday .slt suites run against it too)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

if ! command -v nats-server >/dev/null 2>&1; then
  echo "==> installing nats-server (JetStream; the NATS connector's checks)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

if ! command -v javac >/dev/null 2>&1 || [ ! -f /usr/share/java/postgresql.jar ]; then
  echo "==> installing a JDK and pgjdbc (the JDBC client check)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless libpostgresql-jdbc-java >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "==> installing Node.js and npm (the node-postgres check)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d sql-tests/clients/node/node_modules/pg ]; then
  echo "==> installing node-postgres (npm ci)"
  (cd sql-tests/clients/node && npm ci --silent --no-audit --no-fund)
fi

if ! command -v openssl >/dev/null 2>&1; then
  echo "==> installing openssl (certificates for the TLS check)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

VENV="${SLUICE_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating Python virtual environment at $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import psycopg, psycopg2, asyncpg, sqlalchemy, pgvector, numpy, moto, boto3, PIL, nats' >/dev/null 2>&1; then
  echo "==> installing the Python client packages (psycopg 3, psycopg2, asyncpg, SQLAlchemy, pgvector, numpy, moto, nats-py)"
  "$VENV/bin/pip" install -q -r sql-tests/clients/requirements.txt
fi

SLT_VERSION="0.29.1"
if ! sqllogictest --version 2>/dev/null | grep -q "$SLT_VERSION"; then
  echo "==> installing sqllogictest-bin $SLT_VERSION"
  cargo install -q --locked sqllogictest-bin --version "$SLT_VERSION"
fi

# ONNX Runtime, the MiniLM model and the test models, into $SLUICE_HOME.
SLUICE_VENV="$VENV" bash scripts/install-models.sh
