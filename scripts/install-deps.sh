#!/usr/bin/env bash
# Installs everything Sluice's tests and clients need on a fresh Debian
# machine with the Rust toolchain: psql (client checks), nats-server (the
# NATS connector's check), a Python virtual
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

if ! command -v nats-server >/dev/null 2>&1; then
  echo "==> installing nats-server (JetStream; the NATS connector's checks)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

VENV="${SLUICE_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating Python virtual environment at $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import psycopg, pgvector, numpy, moto, boto3, PIL, nats' >/dev/null 2>&1; then
  echo "==> installing the Python client packages (psycopg 3, pgvector, numpy, moto, nats-py)"
  "$VENV/bin/pip" install -q -r sql-tests/clients/requirements.txt
fi

SLT_VERSION="0.29.1"
if ! sqllogictest --version 2>/dev/null | grep -q "$SLT_VERSION"; then
  echo "==> installing sqllogictest-bin $SLT_VERSION"
  cargo install -q --locked sqllogictest-bin --version "$SLT_VERSION"
fi

# ONNX Runtime, the MiniLM model and the test models, into $SLUICE_HOME.
SLUICE_VENV="$VENV" bash scripts/install-models.sh
