"""Fault injection against the real server: no acknowledged write lost, no
table half-changed or corrupt, every error with a SQLSTATE.

1. S3 faults mid-write, through a fault-injecting HTTP proxy
   (s3_fault_proxy.py) between sluice and a moto server: data-file PUTs
   answered 503/500 (retried), every data-file PUT throttled (a clear
   error, not a hang), manifest (commit) PUTs that land but whose response
   is lost, delayed, or lost and then throttled until the commit gives up,
   and a statement_timeout expiring while the commit's PUT is in flight.
   After each, the live server's table is checked, a further write must
   work, and the server is restarted on the same bucket: the table must
   hold the old or the new content entirely (the new one if the statement
   was acknowledged), as the live server showed it.
2. kill -9 at seeded random moments during UPDATE, DELETE, ALTER TABLE
   ADD COLUMN, a compaction (the 16th small INSERT merges the tail) and
   COPY FROM STDIN on a local data directory of 20,000 rows: after the
   restart the table is exactly its before or after state (after if the
   statement was acknowledged), and the files a crash left are gone.
3. Disk full on a small tmpfs (needs mount permission, else skipped): the
   INSERT that does not fit fails with a SQLSTATE, reads go on, and once
   space is freed inserts work again with no acknowledged row lost, across
   a restart.

Usage: fault_check.py SLUICE_BINARY
Picks free ports itself; needs moto[server], boto3 and psycopg in this
Python. FAULT_SEED seeds the kill moments. Prints `ok  <scenario>` or
`FAIL <scenario>: detail` per scenario and exits non-zero on a failure.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import psycopg

from crash_check import start
from s3_check import free_port, s3_env, start_moto
from s3_fault_proxy import FaultProxy

BUCKET = "sluice-faults"
STATEMENT_TIMEOUT = 60  # seconds a statement may take before it counts as a hang
KILL_ROUNDS = 5
failures = []


class StopPart(Exception):
    """A part cannot go on (reported already)."""


def report(name, problems, info=(), log_lines=()):
    print(f"{'ok  ' if not problems else 'FAIL'} {name}" + ("" if not problems else ": " + "; ".join(problems)))
    for line in info:
        print(f"     ({line})")
    if problems:
        failures.append(name)
        for line in log_lines[-12:]:
            print(f"     | {line[:300]}")


def error_text(e):
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


class Server:
    """One `sluice serve` on a data directory, restartable."""

    def __init__(self, binary, data_dir, log_path, env=None, cwd=None):
        self.binary, self.data_dir, self.env, self.cwd = binary, data_dir, env, cwd
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = start(self.binary, self.port, self.data_dir, self.log, env=self.env, cwd=self.cwd)
        return self

    def kill9(self):
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def restart(self):
        self.kill9()
        return self.start()

    def stop(self):
        """SIGTERM; returns the exit status (or a complaint)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = "hung on SIGTERM (killed after 30 s)"
        self.proc = None
        return status

    def connect(self):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="sluice", dbname="sluice",
                               autocommit=True, connect_timeout=10)

    def log_offset(self):
        self.log.flush()
        return os.path.getsize(self.log_path)

    def log_since(self, offset):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()


class Outcome:
    def __init__(self):
        self.ok = False
        self.error = None  # the psycopg error
        self.hung = False
        self.elapsed = 0.0
        self.result = None

    @property
    def sqlstate(self):
        return getattr(self.error, "sqlstate", None)

    def describe(self, what):
        if self.hung:
            return f"{what}: no answer after {STATEMENT_TIMEOUT} s"
        if self.ok:
            return f"{what}: ok after {self.elapsed:.1f} s"
        return f"{what}: error {self.sqlstate} after {self.elapsed:.1f} s: {error_text(self.error)}"

    def error_problems(self, what):
        """Complaints about how the statement failed: a hang, no SQLSTATE,
        or XX000."""
        if self.hung:
            return [f"{what} hung (no answer in {STATEMENT_TIMEOUT} s)"]
        if self.ok:
            return []
        if self.sqlstate is None:
            return [f"{what} failed without a SQLSTATE ({type(self.error).__name__}: {error_text(self.error)})"]
        if self.sqlstate == "XX000":
            return [f"{what} failed with an internal error XX000: {error_text(self.error)}"]
        return []


def run(server, body, timeout=STATEMENT_TIMEOUT, setup=()):
    """Runs `body(conn)` on a fresh connection in a thread; an answer later
    than `timeout` is a hang (the caller restarts the server)."""
    out = Outcome()

    def target():
        began = time.monotonic()
        try:
            with server.connect() as conn:
                for sql in setup:
                    conn.execute(sql)
                out.result = body(conn)
                out.ok = True
        except Exception as e:  # psycopg errors, or the connection dying
            out.error = e
        out.elapsed = time.monotonic() - began

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        out.hung = True
        out.elapsed = timeout
    return out


def sql(text):
    return lambda conn: conn.execute(text)


def read_rows(server, query):
    """The rows of `query`, or a string saying why not."""
    out = run(server, lambda conn: conn.execute(query).fetchall())
    if out.ok:
        return out.result
    return out.describe("read")


# ---------------------------------------------------------------- S3 faults

S3_QUERY = "SELECT id, v FROM t ORDER BY id"


def s3_rows(model):
    return sorted(model.items())


def s3_scenario(ctx, name, statement, change, faults, expect_fired, setup=(), after_fault=None):
    """Installs `faults` on the proxy, runs `statement` (a SQL string) and
    checks the table against the model before (`old`) and after `change`
    (`new`); then probes a further INSERT, restarts the server on the same
    bucket and checks again. The model becomes what is there."""
    server, proxy = ctx["server"], ctx["proxy"]
    old = dict(ctx["model"])
    new = change(dict(old))
    problems, info = [], []
    offset = server.log_offset()
    logged = len(proxy.log)
    installed = [proxy.inject(**f) for f in faults]
    outcome = run(server, sql(statement), setup=setup)
    info.append(outcome.describe(statement.split()[0]))
    problems += outcome.error_problems(statement.split()[0])
    if after_fault is not None:
        after_fault(installed)
    proxy.clear()
    fired = sum(f.fired for f in installed)
    info.append(f"faults fired: {', '.join(repr(f) for f in installed)}")
    if fired < expect_fired:
        problems.append(f"only {fired} of the {expect_fired} faults expected were injected "
                        f"(requests: {proxy.log[logged:][:6]})")
    if outcome.hung:
        server.restart()
    live = read_rows(server, S3_QUERY)
    states = {"old": s3_rows(old), "new": s3_rows(new)}

    def which(rows):
        for k, v in states.items():
            if rows == v:
                return k
        if isinstance(rows, str):
            return rows
        ids = [r[0] for r in rows]
        return f"neither old nor new: {len(rows)} rows, {len(ids) - len(set(ids))} duplicated ids"

    live_state = which(live)
    info.append(f"live server shows the {live_state} table")
    if live_state not in states:
        problems.append(f"live table is {live_state}")
    elif outcome.ok and live_state != "new":
        problems.append("acknowledged statement not visible on the live server")
    # A further write to the same table must work once the store is healthy.
    probe_id = ctx["next_id"]
    ctx["next_id"] += 1
    probe = run(server, sql(f"INSERT INTO t VALUES ({probe_id}, {probe_id * 10})"))
    if not probe.ok:
        problems.append(f"a later INSERT on the live server fails ({probe.describe('INSERT')[8:]})")
    for state in states.values():
        if probe.ok:
            state.append((probe_id, probe_id * 10))
    try:
        server.restart()
    except RuntimeError as e:
        problems.append(f"server does not restart on the bucket: {e}")
        report(name, problems, info, server.log_since(offset))
        raise StopPart from e
    restarted = read_rows(server, S3_QUERY)
    restarted_state = which(restarted)
    info.append(f"after a restart on the same bucket: the {restarted_state} table")
    if restarted_state not in states:
        problems.append(f"after restart the table is {restarted_state}")
    elif outcome.ok and restarted_state != "new":
        problems.append("acknowledged statement lost across the restart")
    elif live_state in states and restarted_state != live_state:
        problems.append(f"the live server showed the {live_state} table, the restarted one the "
                        f"{restarted_state} one (a statement reported as "
                        f"{'ok' if outcome.ok else 'failed (' + str(outcome.sqlstate) + ')'} "
                        f"{'did not commit' if restarted_state == 'old' else 'committed'})")
    if isinstance(restarted, list):
        ctx["model"] = dict(restarted)
    report(name, problems, info, server.log_since(offset))


def s3_part(binary, work):
    moto_log = open(os.path.join(work, "moto.log"), "ab")
    moto_port = free_port()
    moto = start_moto(moto_port, moto_log)
    proxy = FaultProxy(moto_port).start()
    server = None
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket=BUCKET)
        cwd = os.path.join(work, "s3-cwd")
        os.mkdir(cwd)
        server = Server(binary, f"s3://{BUCKET}/db", os.path.join(work, "server.log"),
                        env=s3_env(f"http://127.0.0.1:{proxy.port}"), cwd=cwd).start()
        with server.connect() as conn:
            conn.execute("CREATE TABLE t (id BIGINT, v BIGINT)")
            conn.execute("INSERT INTO t SELECT i, i * 10 FROM generate_series(1, 2000) AS g(i)")
        ctx = {"server": server, "proxy": proxy, "model": {i: i * 10 for i in range(1, 2001)}, "next_id": 100000}

        def insert(first, last):
            def change(model):
                model.update({i: i * 10 for i in range(first, last + 1)})
                return model
            return f"INSERT INTO t SELECT i, i * 10 FROM generate_series({first}, {last}) AS g(i)", change

        stmt, change = insert(2001, 2500)
        s3_scenario(ctx, "S3: INSERT while data-file PUTs get 503 SlowDown then 500 InternalError (retried)",
                    stmt, change, [dict(action="error", method="PUT", path_contains=".parquet", status=503),
                                   dict(action="error", method="PUT", path_contains=".parquet", status=500)], 2)
        stmt, change = insert(2501, 3000)
        s3_scenario(ctx, "S3: throttling, every data-file PUT answered 503: an error with a SQLSTATE, no hang",
                    stmt, change, [dict(action="error", method="PUT", path_contains=".parquet", count=1000)], 2)
        stmt, change = insert(3001, 3500)
        s3_scenario(ctx, "S3: INSERT whose manifest PUT lands but its response is lost",
                    stmt, change, [dict(action="drop", method="PUT", path_contains="/_manifest/")], 1)

        def update(model):
            return {i: (v + 1 if i % 2 == 0 else v) for i, v in model.items()}
        s3_scenario(ctx, "S3: UPDATE whose manifest PUT lands but its response is lost",
                    "UPDATE t SET v = v + 1 WHERE id % 2 = 0", update,
                    [dict(action="drop", method="PUT", path_contains="/_manifest/")], 1)

        def delete(model):
            return {i: v for i, v in model.items() if i % 5 != 0}
        s3_scenario(ctx, "S3: DELETE whose manifest PUT is delayed 2 s",
                    "DELETE FROM t WHERE id % 5 = 0", delete,
                    [dict(action="delay", method="PUT", path_contains="/_manifest/", delay=2.0)], 1)
        stmt, change = insert(3501, 4000)
        s3_scenario(ctx, "S3: throttling, every manifest PUT answered 503: an error with a SQLSTATE, nothing committed",
                    stmt, change, [dict(action="error", method="PUT", path_contains="/_manifest/", count=1000)], 4)
        stmt, change = insert(4001, 4500)
        s3_scenario(ctx, "S3: INSERT whose manifest PUT lands, response lost, then every retry throttled "
                         "(the commit gives up)",
                    stmt, change, [dict(action="drop", method="PUT", path_contains="/_manifest/"),
                                   dict(action="error", method="PUT", path_contains="/_manifest/", count=1000)], 2)

        def wait_for_delayed(installed):
            # The delayed PUT is still forwarded after the client gave up;
            # wait until the store has answered it.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(f.done >= f.fired for f in installed):
                time.sleep(0.05)
        stmt, change = insert(4501, 5000)
        s3_scenario(ctx, "S3: INSERT cancelled by statement_timeout while its manifest PUT is delayed",
                    stmt, change, [dict(action="delay", method="PUT", path_contains="/_manifest/", delay=3.0)], 1,
                    setup=["SET statement_timeout = '1s'"], after_fault=wait_for_delayed)

        def update_cancelled(model):
            return {i: (v + 3 if i % 3 == 0 else v) for i, v in model.items()}
        s3_scenario(ctx, "S3: UPDATE cancelled by statement_timeout while its manifest PUT is delayed",
                    "UPDATE t SET v = v + 3 WHERE id % 3 = 0", update_cancelled,
                    [dict(action="delay", method="PUT", path_contains="/_manifest/", delay=3.0)], 1,
                    setup=["SET statement_timeout = '1s'"], after_fault=wait_for_delayed)
        status = server.stop()
        report("S3: server exits 0 on SIGTERM after the faults", [] if status == 0 else [f"status {status}"])
    finally:
        if server is not None:
            server.kill9()
        proxy.close()
        moto.kill()
        moto.wait()
        moto_log.close()


# ------------------------------------------------------------ kill -9 rounds

BASE_ROWS = 20000
SMALL_FILES, SMALL_ROWS = 15, 1500


def base_t():
    return [(i, i * 10, f"row {i}") for i in range(1, BASE_ROWS + 1)]


def base_small():
    return [(i, i * 10, f"small {i}") for i in range(1, SMALL_FILES * SMALL_ROWS + 1)]


def copy_rows(conn):
    lines = "".join(f"{i}\t{i * 10}\tcopied {i}\n" for i in range(BASE_ROWS + 1, 2 * BASE_ROWS + 1)).encode()
    with conn.cursor() as cur:
        with cur.copy("COPY t (id, v, s) FROM STDIN") as copy:
            for at in range(0, len(lines), 16384):
                copy.write(lines[at:at + 16384])


KILL_KINDS = [
    ("UPDATE", "t", sql("UPDATE t SET v = v + 1, s = s || '!' WHERE id % 3 = 0"), base_t,
     lambda: [(i, v + 1, s + "!") if i % 3 == 0 else (i, v, s) for i, v, s in base_t()]),
    ("DELETE", "t", sql("DELETE FROM t WHERE id % 4 = 0"), base_t,
     lambda: [r for r in base_t() if r[0] % 4 != 0]),
    ("ALTER TABLE ADD COLUMN", "t", sql("ALTER TABLE t ADD COLUMN c BIGINT DEFAULT 7"), base_t,
     lambda: [r + (7,) for r in base_t()]),
    ("COPY FROM STDIN", "t", copy_rows, base_t,
     lambda: base_t() + [(i, i * 10, f"copied {i}") for i in range(BASE_ROWS + 1, 2 * BASE_ROWS + 1)]),
    ("compaction (the 16th small INSERT merges the tail)", "small",
     sql(f"INSERT INTO small SELECT i, i * 10, 'small ' || i FROM generate_series("
         f"{SMALL_FILES * SMALL_ROWS + 1}, {(SMALL_FILES + 1) * SMALL_ROWS}) AS g(i)"), base_small,
     lambda: [(i, i * 10, f"small {i}") for i in range(1, (SMALL_FILES + 1) * SMALL_ROWS + 1)]),
]


def newest_manifest(table_dir):
    names = sorted(n for n in os.listdir(os.path.join(table_dir, "_manifest")) if n.endswith(".json"))
    with open(os.path.join(table_dir, "_manifest", names[-1])) as f:
        return json.load(f)


def leftover_files(table_dir):
    """Data files the newest manifest does not list, and listed ones missing."""
    listed = {f["path"] for f in newest_manifest(table_dir)["files"]}
    on_disk = {f"data/{n}" for n in os.listdir(os.path.join(table_dir, "data"))}
    return sorted(on_disk - listed), sorted(listed - on_disk)


def make_kill_base(binary, work):
    base = os.path.join(work, "kill-base")
    server = Server(binary, base, os.path.join(work, "server.log")).start()
    with server.connect() as conn:
        conn.execute("CREATE TABLE t (id BIGINT, v BIGINT, s TEXT)")
        conn.execute(f"INSERT INTO t SELECT i, i * 10, 'row ' || i FROM generate_series(1, {BASE_ROWS}) AS g(i)")
        conn.execute("CREATE TABLE small (id BIGINT, v BIGINT, s TEXT)")
        for k in range(SMALL_FILES):
            conn.execute(f"INSERT INTO small SELECT i, i * 10, 'small ' || i FROM generate_series("
                         f"{k * SMALL_ROWS + 1}, {(k + 1) * SMALL_ROWS}) AS g(i)")
    server.stop()
    return base


def kill_round(binary, work, base, n, table, body, delay):
    """Copies the base directory, runs `body` and SIGKILLs the server
    `delay` seconds in (None: lets it finish and stops the server). Returns
    (acknowledged, error, elapsed, rows after the restart, table dir,
    server, log offset)."""
    data = os.path.join(work, f"kill-{n}")
    shutil.copytree(base, data)
    server = Server(binary, data, os.path.join(work, "server.log")).start()
    offset = server.log_offset()
    out = Outcome()
    began = threading.Event()

    def target():
        t0 = time.monotonic()
        try:
            with server.connect() as conn:
                began.set()
                body(conn)
                out.ok = True
        except Exception as e:
            out.error = e
        out.elapsed = time.monotonic() - t0
        began.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    began.wait(30)
    if delay is None:
        thread.join(STATEMENT_TIMEOUT)
        out.hung = thread.is_alive()
    else:
        time.sleep(delay)
        server.kill9()
        thread.join(STATEMENT_TIMEOUT)
    server.restart()
    rows = read_rows(server, f"SELECT * FROM {table} ORDER BY id")
    return out, rows, os.path.join(data, "tables", "public", table), server, offset


def kill_part(binary, work, rng):
    base = make_kill_base(binary, work)
    small_files = len(newest_manifest(os.path.join(base, "tables", "public", "small"))["files"])
    n = 0
    for name, table, body, before_fn, after_fn in KILL_KINDS:
        before, after = before_fn(), after_fn()
        problems, info, log_lines = [], [], []
        # A run to the end: the statement's own result, and its duration.
        n += 1
        out, rows, table_dir, server, offset = kill_round(binary, work, base, n, table, body, None)
        if not out.ok:
            problems.append(out.describe("uninterrupted run") + ("" if not out.hung else " (hang)"))
        elif rows != after:
            problems.append(f"uninterrupted run: {len(rows) if isinstance(rows, list) else rows} rows "
                            f"differ from the expected after state ({len(after)} rows)")
        if table == "small":
            files = len(newest_manifest(table_dir)["files"])
            info.append(f"compaction: {small_files} files before, {files} after")
            if not (small_files == SMALL_FILES and files < SMALL_FILES):
                problems.append(f"no compaction happened ({small_files} files before, {files} after)")
        duration = out.elapsed
        server.stop()
        seen = {"before": 0, "after": 0, "compacted": 0, "committed, compaction cut": 0}
        for round_no in range(KILL_ROUNDS):
            n += 1
            delay = rng.uniform(0, duration * 1.3)
            out, rows, table_dir, server, offset = kill_round(binary, work, base, n, table, body, delay)
            state = "before" if rows == before else "after" if rows == after else None
            if state is None:
                if isinstance(rows, str):
                    desc = rows
                else:
                    ids = [r[0] for r in rows]
                    desc = f"{len(rows)} rows, {len(ids) - len(set(ids))} duplicated ids"
                problems.append(f"round {round_no} (kill at {delay * 1000:.0f} ms): table neither before nor "
                                f"after: {desc}")
                log_lines += server.log_since(offset)
            else:
                seen[state] += 1
                if table == "small" and state == "after":
                    compacted = len(newest_manifest(table_dir)["files"]) < SMALL_FILES
                    seen["compacted" if compacted else "committed, compaction cut"] += 1
                if out.ok and state != "after":
                    problems.append(f"round {round_no}: acknowledged, but the before state after the restart")
            leftovers, missing = leftover_files(table_dir)
            if missing:
                problems.append(f"round {round_no}: the newest manifest lists missing files {missing}")
            if leftovers:
                problems.append(f"round {round_no}: files left by the crash not removed at start: {leftovers}")
            one = read_rows(server, "SELECT 1")
            if one != [(1,)]:
                problems.append(f"round {round_no}: SELECT 1 gave {one}")
            server.kill9()
        info.append(f"{KILL_ROUNDS} kills within {duration * 1300:.0f} ms of the start: {seen['before']} "
                    f"before, {seen['after']} after" + (
                        f" ({seen['compacted']} compacted, {seen['committed, compaction cut']} with the "
                        f"compaction cut short)" if table == "small" else ""))
        report(f"kill -9 during {name}", problems, info, log_lines)


# ---------------------------------------------------------------- disk full

def disk_full_part(binary, work):
    name = "disk full: INSERT fails with 53100 disk_full, reads go on, inserts work after space is freed"
    mnt = os.path.join(work, "tmpfs")
    os.mkdir(mnt)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt], capture_output=True)
    if mounted.returncode != 0:
        print(f"skip {name}: cannot mount a tmpfs here "
              f"({mounted.stderr.decode(errors='replace').strip()[:120]})")
        return
    server = None
    problems, info = [], []
    offset = 0
    try:
        ballast = os.path.join(mnt, "ballast")
        with open(ballast, "wb") as f:
            f.write(os.urandom(10 * 1024 * 1024))
        server = Server(binary, os.path.join(mnt, "data"), os.path.join(work, "server.log")).start()
        offset = server.log_offset()
        with server.connect() as conn:
            conn.execute("CREATE TABLE d (id BIGINT, s TEXT)")
        acked, next_id, failed = set(), 1, None
        rows_per_insert = 20000

        def insert_batch():
            nonlocal next_id
            first, last = next_id, next_id + rows_per_insert - 1
            next_id = last + 1
            # 128 random hex digits a row: about 70 bytes after zstd.
            noise = " || ".join(f"md5(CAST(random() + {k} AS TEXT))" for k in range(4))
            out = run(server, sql(f"INSERT INTO d SELECT i, {noise} "
                                  f"FROM generate_series({first}, {last}) AS g(i)"))
            if out.ok:
                acked.update(range(first, last + 1))
            return out

        for _ in range(40):
            out = insert_batch()
            if not out.ok:
                failed = out
                break
        if failed is None:
            problems.append(f"40 inserts ({len(acked)} rows) fit on a 24 MiB tmpfs: the disk never filled")
        else:
            info.append(failed.describe(f"INSERT once full ({len(acked)} rows in)"))
            problems += failed.error_problems("INSERT on a full disk")
            if failed.sqlstate not in (None, "XX000") and failed.sqlstate != "53100":
                problems.append(f"SQLSTATE {failed.sqlstate}, not 53100 disk_full")
            if failed.hung:
                server.restart()
        ids = read_rows(server, "SELECT id FROM d")
        if not isinstance(ids, list) or {r[0] for r in ids} != acked or len(ids) != len(acked):
            problems.append(f"reads while the disk is full: {ids if isinstance(ids, str) else len(ids)} rows, "
                            f"{len(acked)} acknowledged")
        os.remove(ballast)
        out = insert_batch()
        if not out.ok:
            problems.append(out.describe("INSERT after freeing space"))
        ids = read_rows(server, "SELECT id FROM d")
        if not isinstance(ids, list) or sorted(r[0] for r in ids) != sorted(acked):
            problems.append(f"after freeing space: {ids if isinstance(ids, str) else len(ids)} rows, "
                            f"{len(acked)} acknowledged")
        server.restart()
        ids = read_rows(server, "SELECT id FROM d")
        if not isinstance(ids, list) or sorted(r[0] for r in ids) != sorted(acked):
            problems.append(f"after a restart: {ids if isinstance(ids, str) else len(ids)} rows, "
                            f"{len(acked)} acknowledged")
        else:
            info.append(f"{len(acked)} acknowledged rows there after a restart")
        status = server.stop()
        if status != 0:
            problems.append(f"SIGTERM: status {status}")
    except RuntimeError as e:
        problems.append(str(e))
    finally:
        if server is not None:
            server.kill9()
        subprocess.run(["umount", mnt], capture_output=True)
    report(name, problems, info, server.log_since(offset) if server is not None else [])


def main():
    binary = sys.argv[1]
    rng = random.Random(int(os.environ.get("FAULT_SEED", "1717")))
    work = tempfile.mkdtemp(prefix="sluice-faults-")
    began = time.monotonic()
    for part, args in ((s3_part, (binary, work)), (kill_part, (binary, work, rng)),
                       (disk_full_part, (binary, work))):
        try:
            part(*args)
        except StopPart:
            pass
        except Exception as e:  # a part that could not run at all
            report(f"{part.__name__} ran", [f"{type(e).__name__}: {e}"])
    with open(os.path.join(work, "server.log"), errors="replace") as f:
        panics = [line for line in f if "panicked" in line]
    report("no panic in the server log", [f"{len(panics)} panics: {panics[:3]}"] if panics else [])
    took = time.monotonic() - began
    if failures:
        print(f"(server log: {work}/server.log)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"faults: {len(failures)} failed" if failures else "faults: all passed", f"({took:.0f} s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
