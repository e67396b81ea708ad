"""Regional checkpoints under failure, against the real `sluice` binary.

A seeded generator emits sequence-numbered events; each query embeds them
with the bundled model (EMBED at the head: the query is cut into two
regions at a durable log of the embeddings) and feeds a materialized view.

1. kill -9: five views (the embedded rows themselves, a non-windowed and a
   windowed aggregate over EMBED; a SESSION-window aggregate and a join
   without a model, restored whole), a JSON file sink and a table sink of
   the embedded rows, and two views over a Sluice table that the check
   INSERTs into between kills (EMBED of its rows, and a count per key),
   while the server is SIGKILLed KILLS times at random moments and
   restarted on the same data directory. Once the bounded source is
   exhausted every view must equal the one-off query over the same events,
   and the views, the delivered files and the sink's table must hold each
   sequence number exactly once (duplicates 0, lost 0). The table's views
   must resume from their checkpoints every time (the server never logs
   that they started over), compactions of the table included.
2. Downstream failures: the `sink-apply` failpoint fails (error or panic)
   the downstream region 20 times. The view must equal the golden result,
   the status must count 20 region restarts, and the model must have seen
   each event exactly once (DESCRIBE MODEL's row counter): no inference
   re-executed.

3. Rescale: a view created at parallelism 2 is moved to 1, then to 3,
   while events arrive (ALTER MATERIALIZED VIEW … SET (parallelism = n):
   a checkpoint, then a restart from it); its result equals the golden one
   and the model still sees each event once.

4. Upstream failures: the `region-log-append` failpoint fails (error or
   panic) the upstream region 20 times. Each time it restarts on its own,
   from the log's newest segment: the view holds each sequence number
   exactly once, the status counts 20 upstream restarts and no downstream
   or whole-query restart (the downstream region ran on).

5. Backpressure: the downstream region is slowed down (the `sink-apply`
   failpoint sleeps in every epoch) while the upstream region closes an
   epoch every 20 ms. The region log must never run more than 64 epochs
   ahead of what the downstream region has applied, and the status table
   must show the upstream region waiting (`backpressured_ms`).

Usage: checkpoint_check.py SLUICE_BINARY PORT [KILLS]
"""

import glob
import json
import os
import random
import signal
import sys
import tempfile
import time

import psycopg

from crash_check import start

EVENTS = 1500
FAILURES = 20
SOURCE = """CREATE TABLE ev (id BIGINT, k BIGINT, body TEXT, ts TIMESTAMP(3),
                            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '{rate}', 'events' = '{events}', 'seed' = '577',
      'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
      'fields.k.min' = '0', 'fields.k.max' = '9', 'fields.body.length' = '16')"""
EMBEDDED = "SELECT id, k, ts, vector_dims(EMBED('minilm', body)) AS dims FROM ev"
VIEWS = {
    "embedded": f"CREATE MATERIALIZED VIEW embedded AS {EMBEDDED}",
    "per_key": f"""CREATE MATERIALIZED VIEW per_key AS
        SELECT k, count(*) AS n, sum(id) AS s, sum(dims) AS d, max(id) AS hi, avg(id) AS mean
        FROM ({EMBEDDED}) GROUP BY k""",
    "per_window": f"""CREATE MATERIALIZED VIEW per_window AS
        SELECT window_start, count(*) AS n, sum(id) AS s, sum(dims) AS d
        FROM TUMBLE(({EMBEDDED}), DESCRIPTOR(ts), INTERVAL '10' SECOND)
        GROUP BY window_start, window_end""",
    # Without a model call: one region, restored whole from its checkpoint.
    "per_session": """CREATE MATERIALIZED VIEW per_session AS
        SELECT k, window_start, window_end, count(*) AS n, sum(id) AS s
        FROM SESSION(TABLE ev PARTITION BY k, DESCRIPTOR(ts), INTERVAL '30' SECOND)
        GROUP BY k, window_start, window_end""",
    "pairs": """CREATE MATERIALIZED VIEW pairs AS
        SELECT a.id AS first, b.id AS second FROM ev a JOIN ev b ON a.id + 1 = b.id AND a.k = b.k""",
}
DOCS = "CREATE TABLE docs (id BIGINT, k BIGINT, body TEXT)"
DOC_VIEWS = {
    "doc_vectors": """CREATE MATERIALIZED VIEW doc_vectors AS
        SELECT id, k, vector_dims(EMBED('minilm', body)) AS dims FROM docs""",
    "doc_counts": """CREATE MATERIALIZED VIEW doc_counts AS
        SELECT k, count(*) AS n, sum(id) AS s FROM docs GROUP BY k""",
}
DOCS_PER_KILL = 7
GOLDEN = {
    "per_key": ("SELECT k, n, s, d, hi, mean FROM per_key",
                "SELECT k, count(*), sum(id), 384 * count(*), max(id), avg(id) FROM ev GROUP BY k"),
    "per_window": ("SELECT window_start, n, s, d FROM per_window",
                   """SELECT window_start, count(*), sum(id), 384 * count(*)
                      FROM TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '10' SECOND)
                      GROUP BY window_start, window_end"""),
    "per_session": ("SELECT k, window_start, window_end, n, s FROM per_session",
                    """SELECT k, window_start, window_end, count(*), sum(id)
                       FROM SESSION(TABLE ev PARTITION BY k, DESCRIPTOR(ts), INTERVAL '30' SECOND)
                       GROUP BY k, window_start, window_end"""),
    "pairs": ("SELECT first, second FROM pairs",
              "SELECT a.id, b.id FROM ev a JOIN ev b ON a.id + 1 = b.id AND a.k = b.k"),
    "doc_vectors": ("SELECT id, k, dims FROM doc_vectors", "SELECT id, k, 384 FROM docs"),
    "doc_counts": ("SELECT k, n, s FROM doc_counts",
                   "SELECT k, count(*), sum(id) FROM docs GROUP BY k"),
}


def connect(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice",
                           autocommit=True, connect_timeout=5)


def rows(conn, sql):
    return sorted(conn.execute(sql).fetchall())


def wait_finished(port, names, timeout=300):
    """Waits until every query in `names` has read its whole source."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(port) as conn:
            status = dict(conn.execute(
                "SELECT name, status || coalesce(': ' || last_error, '') "
                "FROM sluice_catalog.continuous_queries").fetchall())
        failed = {n: s for n, s in status.items() if s.startswith("failed")}
        if failed:
            raise AssertionError(f"queries failed: {failed}")
        if all(status.get(name) == "finished" for name in names):
            return
        time.sleep(0.2)
    raise AssertionError(f"queries did not finish: {status}")


def check_views(conn, names):
    """Every view equals its golden result; the embedded rows hold each
    sequence number exactly once."""
    ok = True
    if "embedded" in names:
        total, distinct, low, high, bad = conn.execute(
            "SELECT count(*), count(DISTINCT id), min(id), max(id), "
            "count(*) FILTER (WHERE dims <> 384) FROM embedded").fetchone()
        duplicated, lost = total - distinct, EVENTS - distinct
        print(f"  embedded: {total} rows, duplicated {duplicated}, lost {lost}")
        ok &= (duplicated, lost, low, high, bad) == (0, 0, 1, EVENTS, 0)
    for name in names:
        if name in GOLDEN:
            view_sql, golden_sql = GOLDEN[name]
            got, want = rows(conn, view_sql), rows(conn, golden_sql)
            print(f"  {name}: {len(got)} rows, equal to the one-off query: {got == want}")
            ok &= got == want and len(want) > 0
    return ok


def check_files(out):
    """The sink's delivered files hold each sequence number once."""
    ids = []
    for path in glob.glob(os.path.join(out, "*.json")):
        with open(path) as f:
            ids.extend(json.loads(line)["id"] for line in f if line.strip())
    duplicated, lost = len(ids) - len(set(ids)), EVENTS - len(set(ids))
    print(f"  file sink: {len(ids)} rows in {len(glob.glob(os.path.join(out, '*.json')))} files, "
          f"duplicated {duplicated}, lost {lost}")
    return duplicated == 0 and lost == 0 and not glob.glob(os.path.join(out, "_pending", "*"))


def check_landed(conn):
    """The table sink's table holds each sequence number once."""
    total, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM landed").fetchone()
    duplicated, lost = total - distinct, EVENTS - distinct
    print(f"  table sink: {total} rows, duplicated {duplicated}, lost {lost}")
    return duplicated == 0 and lost == 0


def insert_docs(port, first):
    """One INSERT of DOCS_PER_KILL sequence-numbered rows (acknowledged)."""
    with connect(port) as conn:
        values = ", ".join(f"({i}, {i % 5}, 'doc number {i}')"
                           for i in range(first, first + DOCS_PER_KILL))
        conn.execute(f"INSERT INTO docs VALUES {values}")
    return first + DOCS_PER_KILL


def started_over(workdir, names):
    """How often the server logged that one of `names` could not resume."""
    with open(os.path.join(workdir, "kills.log"), errors="replace") as f:
        return sum(1 for line in f
                   if "cannot resume" in line and any(name in line for name in names))


def kill_and_restart(binary, port, kills, rng, workdir):
    data = os.path.join(workdir, "kills")
    out = os.path.join(workdir, "sink")
    log = open(os.path.join(workdir, "kills.log"), "ab")
    proc = start(binary, port, data, log)
    with connect(port) as conn:
        conn.execute(SOURCE.format(rate=400, events=EVENTS))
        conn.execute("SET barrier_interval_ms = 100")
        conn.execute("SET checkpoint_interval_ms = 300")
        regions = {region for region, _ in conn.execute(f"EXPLAIN {VIEWS['per_key']}").fetchall()}
        assert "log" in regions and len(regions) == 4, f"EXPLAIN shows no region log: {regions}"
        for sql in VIEWS.values():
            conn.execute(sql)
        conn.execute(f"CREATE SINK delivered AS SELECT id, dims FROM ({EMBEDDED}) "
                     f"WITH ('connector' = 'filesystem', 'path' = 'file://{out}/', 'format' = 'json')")
        conn.execute("CREATE TABLE landed (id BIGINT, dims INT)")
        conn.execute(f"CREATE SINK landed_sink AS SELECT id, dims FROM ({EMBEDDED}) "
                     "WITH ('connector' = 'table', 'table' = 'landed')")
        conn.execute(DOCS)
        for sql in DOC_VIEWS.values():
            conn.execute(sql)
    next_doc = 1
    mid_stream = 0
    for _ in range(kills):
        next_doc = insert_docs(port, next_doc)
        time.sleep(rng.uniform(0.2, 1.0))
        with connect(port) as conn:
            (seen,) = conn.execute("SELECT count(*) FROM embedded").fetchone()
        mid_stream += 0 < seen < EVENTS
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start(binary, port, data, log)
    try:
        next_doc = insert_docs(port, next_doc)
        wait_finished(port, [*VIEWS, "delivered", "landed_sink"])
        with connect(port) as conn:
            conn.execute("FLUSH")
            # The sinks deliver an epoch once a checkpoint covers it.
            conn.execute("CHECKPOINT")
            print(f"  {kills} kills with restarts, {mid_stream} of them while events were still arriving")
            (docs,) = conn.execute("SELECT count(*) FROM doc_vectors").fetchone()
            restarts = started_over(workdir, DOC_VIEWS)
            print(f"  docs: {next_doc - 1} inserted, {docs} in the view, started over {restarts} times")
            return (check_views(conn, [*VIEWS, *DOC_VIEWS]) and check_files(out) and check_landed(conn)
                    and docs == next_doc - 1 and restarts == 0 and mid_stream >= kills // 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def failing_server(binary, port, workdir, name, failpoint):
    """A server whose `failpoint` fails FAILURES times (errors and panics
    alternating, two passes between failures), then never again."""
    pattern = "->".join(("2*off->1*panic" if i % 2 else "2*off->1*return") for i in range(FAILURES))
    env = dict(os.environ, SLUICE_FAILPOINTS=f"{failpoint}={pattern}->off")
    log = open(os.path.join(workdir, f"{name}.log"), "ab")
    return start(binary, port, os.path.join(workdir, name), log, env=env)


def downstream_failures(binary, port, workdir):
    proc = failing_server(binary, port, workdir, "failures", "sink-apply")
    try:
        with connect(port) as conn:
            conn.execute(SOURCE.format(rate=600, events=EVENTS))
            conn.execute("SET barrier_interval_ms = 50")
            conn.execute("SET checkpoint_interval_ms = 200")
            before = model_rows(conn)
            conn.execute(VIEWS["per_key"])
        wait_finished(port, ["per_key"])
        with connect(port) as conn:
            restarts, regions = conn.execute(
                "SELECT region_restarts, regions FROM sluice_catalog.continuous_queries "
                "WHERE name = 'per_key'").fetchone()
            embedded = model_rows(conn) - before
            print(f"  {regions} regions, {restarts} downstream restarts, model rows {embedded} "
                  f"for {EVENTS} events: re-executed {embedded - EVENTS}")
            ok = check_views(conn, ["per_key"])
            return ok and restarts == FAILURES and regions == 2 and embedded == EVENTS
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def rescale(binary, port, workdir):
    log = open(os.path.join(workdir, "rescale.log"), "ab")
    proc = start(binary, port, os.path.join(workdir, "rescale"), log)
    try:
        with connect(port) as conn:
            conn.execute(SOURCE.format(rate=300, events=EVENTS))
            conn.execute("SET barrier_interval_ms = 100")
            conn.execute("SET streaming_parallelism = 2")
            before = model_rows(conn)
            conn.execute(VIEWS["per_key"])
            steps = []
            for parallelism in (1, 3):
                time.sleep(1.5)
                (seen,) = conn.execute("SELECT coalesce(sum(n), 0) FROM per_key").fetchone()
                conn.execute(f"ALTER MATERIALIZED VIEW per_key SET (parallelism = {parallelism})")
                steps.append(f"{parallelism} after {seen} events")
        wait_finished(port, ["per_key"])
        with connect(port) as conn:
            embedded = model_rows(conn) - before
            print(f"  2 -> {' -> '.join(steps)}; model rows {embedded} for {EVENTS} events")
            return check_views(conn, ["per_key"]) and embedded == EVENTS
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def upstream_failures(binary, port, workdir):
    proc = failing_server(binary, port, workdir, "upstream", "region-log-append")
    try:
        with connect(port) as conn:
            conn.execute(SOURCE.format(rate=600, events=EVENTS))
            conn.execute("SET barrier_interval_ms = 50")
            conn.execute("SET checkpoint_interval_ms = 200")
            before = model_rows(conn)
            conn.execute(VIEWS["embedded"])
        wait_finished(port, ["embedded"])
        with connect(port) as conn:
            upstream, restarts, regions = conn.execute(
                "SELECT upstream_restarts, region_restarts, regions "
                "FROM sluice_catalog.continuous_queries WHERE name = 'embedded'").fetchone()
            embedded = model_rows(conn) - before
            # Rows read after the log's newest segment go through the model
            # again: their outputs were lost with the failed run.
            print(f"  {regions} regions, {upstream} upstream restarts, {restarts} downstream or "
                  f"whole-query restarts; model rows {embedded} for {EVENTS} events")
            ok = check_views(conn, ["embedded"])
            return ok and upstream == FAILURES and restarts == 0 and regions == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


MAX_LAG_EPOCHS = 64


def backpressure(binary, port, workdir):
    # The downstream applies one epoch a second: slower than any upstream
    # closes them. At 200 ms a debug build's upstream (EMBED over tokenizers
    # built without optimization) sometimes closed epochs no faster, so the
    # log never ran ahead (2 of 3 CI-like runs, 2026-12-06).
    env = dict(os.environ, SLUICE_FAILPOINTS="sink-apply=sleep(1000)")
    log = open(os.path.join(workdir, "backpressure.log"), "ab")
    proc = start(binary, port, os.path.join(workdir, "backpressure"), log, env=env)
    try:
        with connect(port) as conn:
            # Events keep arriving past the sampling below.
            conn.execute(SOURCE.format(rate=300, events=EVENTS * 20))
            conn.execute("SET barrier_interval_ms = 20")
            conn.execute(VIEWS["embedded"])
            lags = []
            # Until the bound is reached (how soon depends on the machine's
            # speed), then two seconds more: it must hold.
            reached, deadline = None, time.monotonic() + 120
            while time.monotonic() < (deadline if reached is None else reached + 2):
                lag, = conn.execute(
                    "SELECT coalesce(log_epoch, 0) - epoch FROM sluice_catalog.continuous_queries "
                    "WHERE name = 'embedded'").fetchone()
                lags.append(lag)
                if reached is None and lag >= MAX_LAG_EPOCHS - 4:
                    reached = time.monotonic()
                time.sleep(0.05)
            waited, regions, status = conn.execute(
                "SELECT backpressured_ms, regions, status FROM sluice_catalog.continuous_queries "
                "WHERE name = 'embedded'").fetchone()
            print(f"  {regions} regions; log ahead of the applied epoch by at most {max(lags)} epochs "
                  f"(bound {MAX_LAG_EPOCHS}); upstream waited {waited:.0f} ms; {status}")
            # Without backpressure the log runs further ahead every second:
            # the bound must be reached, and held.
            return (regions == 2 and status == "running" and waited > 0
                    and reached is not None and max(lags) <= MAX_LAG_EPOCHS + 1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def model_rows(conn):
    for prop, value in conn.execute("DESCRIBE MODEL minilm").fetchall():
        if prop == "rows":
            return int(value)
    raise AssertionError("DESCRIBE MODEL has no rows counter")


def main():
    binary, port = sys.argv[1], int(sys.argv[2])
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rng = random.Random(int(os.environ.get("CHECKPOINT_SEED", "577")))
    workdir = tempfile.mkdtemp(prefix="sluice-checkpoint-")
    print("kill -9 with restarts:")
    killed = kill_and_restart(binary, port, kills, rng, workdir)
    print("downstream failures:")
    failed = downstream_failures(binary, port, workdir)
    print("rescale:")
    rescaled = rescale(binary, port, workdir)
    print("upstream failures:")
    upstream = upstream_failures(binary, port, workdir)
    print("backpressure:")
    held = backpressure(binary, port, workdir)
    if not (killed and failed and rescaled and upstream and held):
        print(f"FAILED (logs in {workdir})")
        sys.exit(1)


if __name__ == "__main__":
    main()
