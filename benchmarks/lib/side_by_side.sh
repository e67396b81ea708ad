# Shared by the side-by-side benchmarks (pgbench/, load/) and by
# scripts/slt-on-postgres.sh: a throwaway PostgreSQL 15 cluster and a
# throwaway `sluice serve`, a work folder, and a cleanup trap that stops
# both. Source it after defining log/die,
# REPO_ROOT, PG_BIN, PG_PORT, SLUICE_PORT and SLUICE_BIN.

# Installs postgresql-15 if missing and checks psql and the postgres user.
ensure_postgres15() {
    if [[ ! -x "$PG_BIN/postgres" ]]; then
        log "installing postgresql-15"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15
    fi
    [[ -x "$PG_BIN/postgres" ]] || die "$PG_BIN/postgres still missing"
    command -v psql >/dev/null || die "psql not found"
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/bash postgres
}

# Fails when something already listens on PG_PORT or SLUICE_PORT: that
# server would be measured instead of ours.
ensure_ports_free() {
    local port
    for port in "$PG_PORT" "$SLUICE_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "something listens on port $port already (set PG_PORT / SLUICE_PORT)"
        fi
    done
}

# Builds the release binary if missing and makes SLUICE_BIN absolute.
ensure_sluice_bin() {
    if [[ ! -x "$SLUICE_BIN" ]]; then
        log "$SLUICE_BIN missing; building it"
        cargo build --release -p sluice-server
        [[ -x "$SLUICE_BIN" ]] || die "$SLUICE_BIN still missing after build"
    fi
    case "$SLUICE_BIN" in /*) ;; *) SLUICE_BIN="$REPO_ROOT/$SLUICE_BIN" ;; esac
}

# make_workdir NAME: creates the work folder and its parts, installs the
# cleanup trap.
make_workdir() {
    WORK=$(mktemp -d "/tmp/sluice-$1.XXXXXX")
    chmod 755 "$WORK"
    PGDATA_DIR="$WORK/pg/data"
    PGSOCK="$WORK/pg/sock"
    PGLOG="$WORK/pg/postgres.log"
    SLUICE_DATA="$WORK/sluice-data"
    SLUICE_LOG="$WORK/sluice.log"
    mkdir -p "$WORK/pg" "$PGSOCK" "$SLUICE_DATA"
    chown -R postgres: "$WORK/pg"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

SLUICE_PID=""
PG_STARTED=0

as_postgres() { (cd "$WORK/pg" && runuser -u postgres -- "$@"); }

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$SLUICE_PID" ]] && kill -0 "$SLUICE_PID" 2>/dev/null; then
        kill "$SLUICE_PID" 2>/dev/null
        for _ in $(seq 1 20); do kill -0 "$SLUICE_PID" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$SLUICE_PID" 2>/dev/null
        wait "$SLUICE_PID" 2>/dev/null
    fi
    if [[ $PG_STARTED == 1 ]]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 \
            || as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$rc"
}
sluice_log_tail() {
    log "--- last 40 lines of sluice log ($SLUICE_LOG) ---"
    tail -n 40 "$SLUICE_LOG" >&2 || true
    log "--- end of sluice log ---"
}

# start_postgres [SERVER OPTION…]: initdb and start on PG_PORT.
start_postgres() {
    log "initdb + start postgres on 127.0.0.1:$PG_PORT"
    as_postgres "$PG_BIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres -E UTF8 --no-locale >/dev/null
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PGSOCK $*" start >/dev/null \
        || { tail -n 40 "$PGLOG" >&2 || true; die "postgres did not start"; }
    PG_STARTED=1
}

# Starts sluice on SLUICE_PORT and waits until it answers.
start_sluice() {
    log "starting $SLUICE_BIN on 127.0.0.1:$SLUICE_PORT"
    "$SLUICE_BIN" serve --listen "127.0.0.1:$SLUICE_PORT" --data-dir "$SLUICE_DATA" >"$SLUICE_LOG" 2>&1 &
    SLUICE_PID=$!
    local ready=0
    for _ in $(seq 1 120); do
        if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
            sluice_log_tail; die "sluice exited during startup"
        fi
        if psql -h 127.0.0.1 -p "$SLUICE_PORT" -U sluice -d sluice -Atc 'select 1' >/dev/null 2>&1; then
            ready=1; break
        fi
        sleep 0.5
    done
    [[ $ready == 1 ]] || { sluice_log_tail; die "sluice not ready on port $SLUICE_PORT after 60 s"; }
}
