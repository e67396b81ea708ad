"""Checkpoints and regional recovery, measured side by side in one run.

1. Overhead: Nexmark queries as continuous queries over the `nexmark`
   generator (bids, paced far above what one core sustains, so the query
   runs as fast as it can), with a checkpoint every second vs checkpoints
   off. Reports events/s of each, their ratio, and the last checkpoint's
   duration and size. Queries that cannot be checkpointed yet (joins) are
   reported as such.
2. Recovery: a generator -> EMBED (the bundled model) -> GROUP BY view with
   the same schedule of injected downstream failures (the `sink-apply`
   failpoint), run twice: with the region log after the model (regional
   recovery: only the aggregate and the view restart) and without it (a
   whole-query restart from the last checkpoint, as Flink and Arroyo
   recover). The events arrive over about 20 s, so that both runs meet the
   same failures. Reports the model rows computed (events x 1 is the
   minimum), the wall time to the end, and the average downstream recovery
   time.

Usage: bench.py SLUICE_BINARY PORT [--events N] [--embed-events N] [--failures N]
"""

import argparse
import os
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../sql-tests/clients"))
from crash_check import start  # noqa: E402

NEXMARK = {
    "q1": "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
    "q5a": """SELECT auction, count(*) AS num, window_start, window_end
              FROM HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)
              GROUP BY auction, window_start, window_end""",
    "q_agg": "SELECT auction, count(*) AS n, max(price) AS hi, avg(price) AS mean FROM bid GROUP BY auction",
    "q7": """SELECT B.auction, B.price, B.bidder, B.date_time
             FROM bid B JOIN (SELECT max(price) AS maxprice, window_end AS date_time
                              FROM TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)
                              GROUP BY window_start, window_end) B1
             ON B.price = B1.maxprice
             WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time""",
}


def connect(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)


def status(conn, name):
    cur = conn.execute(
        "SELECT status, last_error, checkpoint_epoch::bigint, checkpoint_ms, checkpoint_bytes::float8, "
        "region_restarts::bigint, recovery_ms, checkpointing FROM sluice_catalog.continuous_queries WHERE name = %s", (name,))
    return cur.fetchone()


def run_until_finished(conn, name, timeout=1800):
    """Waits for the query's end. A whole-query restart shows the query
    failed (or briefly absent) until it runs again: only a failure that
    lasts is one."""
    began = time.monotonic()
    failing_since = None
    while time.monotonic() - began < timeout:
        row = status(conn, name)
        if row is not None and row[0] == "finished":
            return time.monotonic() - began, row
        if row is None or row[0] == "failed":
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > 30:
                raise RuntimeError(f"{name} failed: {row and row[1]}")
        else:
            failing_since = None
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not finish")


def overhead(binary, port, workdir, events, queries, pace):
    log = open(os.path.join(workdir, "overhead.log"), "ab")
    proc = start(binary, port, os.path.join(workdir, "overhead"), log)
    rows = []
    try:
        with connect(port) as conn:
            conn.execute(
                "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, "
                "date_time TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) "
                f"WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events' = '{events}', "
                f"'events_per_second' = '{pace}')")
            for name in queries:
                timings = {}
                for interval in (0, 1000, 0, 1000):  # alternate: the machine drifts
                    view = f"{name}_{interval}_{len(timings.get(interval, []))}"
                    conn.execute(f"SET checkpoint_interval_ms = {interval}")
                    began = time.monotonic()
                    try:
                        conn.execute(f"CREATE MATERIALIZED VIEW {view} AS {NEXMARK[name]}")
                    except psycopg.Error as e:
                        rows.append((name, f"refused: {str(e).splitlines()[0]}"))
                        break
                    _, row = run_until_finished(conn, view)
                    seconds = time.monotonic() - began
                    checkpoints = status(conn, view)
                    timings.setdefault(interval, []).append((seconds, checkpoints))
                    conn.execute(f"DROP MATERIALIZED VIEW {view}")
                else:
                    off = min(t for t, _ in timings[0])
                    on = min(t for t, _ in timings[1000])
                    last = timings[1000][-1][1]
                    if not last[7]:
                        rows.append((name, "not checkpointable yet (join state)"))
                        continue
                    if last[2] is None:
                        rows.append((name, f"finished in {on:.1f} s, before its first checkpoint"))
                        continue
                    rows.append((name, f"{events / off:,.0f} ev/s off, {events / on:,.0f} ev/s every 1 s, "
                                       f"throughput ratio {off / on:.3f} (1.000 = no loss), "
                                       f"last checkpoint {last[3]:.1f} ms, {last[4] / 1e6:.2f} MB"))
    finally:
        proc.kill()
        proc.wait()
    return rows


def recovery(binary, port, workdir, events, failures):
    pattern = "->".join(("3*off->1*panic" if i % 2 else "3*off->1*return") for i in range(failures))
    env = dict(os.environ, SLUICE_FAILPOINTS=f"sink-apply={pattern}->off")
    rows = []
    for regional in ("on", "off"):
        log = open(os.path.join(workdir, f"recovery-{regional}.log"), "ab")
        proc = start(binary, port, os.path.join(workdir, f"recovery-{regional}"), log, env=env)
        try:
            with connect(port) as conn:
                conn.execute(
                    "CREATE TABLE ev (id BIGINT, k BIGINT, body TEXT, ts TIMESTAMP) WITH "
                    f"('connector' = 'datagen', 'rows-per-second' = '{max(events // 20, 50)}', 'events' = '{events}', "
                    "'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.k.min' = '0', "
                    "'fields.k.max' = '9', 'fields.body.length' = '24')")
                conn.execute("SET barrier_interval_ms = 100")
                conn.execute("SET checkpoint_interval_ms = 1000")
                conn.execute(f"SET region_logs = {regional}")
                before = model_rows(conn)
                began = time.monotonic()
                conn.execute("CREATE MATERIALIZED VIEW agg AS SELECT k, count(*) AS n, sum(d) AS d "
                             "FROM (SELECT k, vector_dims(EMBED('minilm', body)) AS d FROM ev) GROUP BY k")
                seconds, row = run_until_finished(conn, "agg")
                seconds = time.monotonic() - began
                computed = model_rows(conn) - before
                (total,) = conn.execute("SELECT sum(n) FROM agg").fetchone()
                restarts, recovery_ms = row[5], row[6]
                mode = "regional (log after EMBED)" if regional == "on" else "whole-query restart"
                recovered = (f", downstream recovery {recovery_ms / max(restarts, 1):.0f} ms each"
                             if regional == "on" else "")
                rows.append((mode, f"{restarts} restarts, model rows {computed} for {events} events "
                                   f"({computed - events} re-run), {seconds:.1f} s to the end, "
                                   f"view rows {total}{recovered}"))
        finally:
            proc.kill()
            proc.wait()
    return rows


def model_rows(conn):
    for prop, value in conn.execute("DESCRIBE MODEL minilm").fetchall():
        if prop == "rows":
            return int(value)
    raise RuntimeError("DESCRIBE MODEL has no rows counter")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("port", type=int)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", default="q1,q5a,q_agg,q7")
    parser.add_argument("--embed-events", type=int, default=20_000)
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--pace", type=int, default=100_000_000,
                        help="bids per second the generator allows (default: no limit in practice)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="sluice-checkpoint-bench-")
    print(f"checkpoint overhead ({args.events} Nexmark bids per run, best of 2 each):")
    for name, line in overhead(args.binary, args.port, workdir, args.events, args.queries.split(","), args.pace):
        print(f"  {name}: {line}")
    print(f"recovery ({args.embed_events} events through EMBED, {args.failures} injected downstream failures):")
    for mode, line in recovery(args.binary, args.port, workdir, args.embed_events, args.failures):
        print(f"  {mode}: {line}")


if __name__ == "__main__":
    main()
