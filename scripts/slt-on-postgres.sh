#!/usr/bin/env bash
# Runs the everyday-SQL .slt suites (those without Sluice's own types,
# functions and continuous queries) against a real PostgreSQL 15, so that
# every expected output in them is Postgres' own answer. A record where
# Sluice deliberately differs carries `skipif postgres15` under a comment
# giving the reason. Both of the sqllogictest CLI's engines run, simple and
# extended protocol, with the labels scripts/client-checks.sh gives them
# against Sluice (`wire`, `extended`).
#
# Left out, each for a reason:
#   basics/limits.slt       tensors and Sluice's resource limits
#   session/transactions.slt snapshot isolation at every level, table-level
#                           write conflicts, continuous queries, vectors
#   session/roles.slt       Sluice's predefined roles and CREATE ROLE IF NOT EXISTS
#   catalog/relations.slt   Sluice's types in the catalog, its OIDs
#   streaming/, vectors/, types/{media,object_refs,tensors,vectors}.slt
#
# Needs root (Postgres runs as the `postgres` OS user) and the Debian package
# postgresql-15 (scripts/install-deps.sh installs it). PG_PORT picks the
# port (default 5441).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_ROOT=$(pwd)
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=${PG_PORT:-5441}

FILES=(
  basics/ddl_dml.slt
  basics/delete_update.slt
  basics/nulls.slt
  basics/point_lookups.slt
  basics/queries.slt
  catalog/functions.slt
  errors/errors.slt
  session/settings.slt
  session/transactions_and_prepare.slt
  types/bytea.slt
  types/floats.slt
  types/uuid_json.slt
)

log() { echo "[slt-on-postgres] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The throwaway cluster's life cycle is the side-by-side benchmarks' own.
source "$REPO_ROOT/benchmarks/lib/side_by_side.sh"
ensure_postgres15
make_workdir slt-postgres
start_postgres

pg() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
pg -c "CREATE ROLE sluice SUPERUSER LOGIN"

paths=()
for f in "${FILES[@]}"; do paths+=("sql-tests/slt/$f"); done

for engine in postgres postgres-extended; do
  labels=(--label wire --label postgres15)
  if [ "$engine" = postgres-extended ]; then labels+=(--label extended); fi
  # A fresh database per engine: the suites create the same tables.
  pg -c "DROP DATABASE IF EXISTS sluice" -c "CREATE DATABASE sluice OWNER sluice"
  log "engine $engine"
  sqllogictest --engine "$engine" --host 127.0.0.1 --port "$PG_PORT" --user sluice --db sluice \
    "${labels[@]}" "${paths[@]}"
done
