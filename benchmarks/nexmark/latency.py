"""End-to-end latency of a continuous query: a row committed to a table →
the same row visible to a subscriber of a view over it.

One connection INSERTs a row carrying its own sequence number at a fixed
rate; another holds `DECLARE c CURSOR FOR SUBSCRIBE v` and FETCHes; a row's
latency is the time from its INSERT being acknowledged to its arrival in a
FETCH. Sluice closes an epoch every `barrier_interval_ms`, so latency is
expected between 0 and one interval plus the processing time; the issue's
goal is p99 <= barrier interval + 100 ms.

Usage: python latency.py HOST PORT [--rate 50] [--seconds 10] [--barrier-ms 200]
Prints: barrier_ms rate rows p50_ms p99_ms max_ms
"""
import argparse
import threading
import time

import psycopg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--rate", type=float, default=50.0, help="rows per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--barrier-ms", type=int, default=200)
    args = parser.parse_args()
    conn = dict(host=args.host, port=args.port, user="sluice", dbname="sluice")

    with psycopg.connect(autocommit=True, **conn) as admin:
        admin.execute("DROP MATERIALIZED VIEW IF EXISTS latency_v")
        admin.execute("DROP TABLE IF EXISTS latency_t")
        admin.execute("CREATE TABLE latency_t (seq BIGINT, note TEXT)")
        # The view's epochs follow the creating session's barrier interval.
        admin.execute(f"SET barrier_interval_ms = {args.barrier_ms}")
        admin.execute("CREATE MATERIALIZED VIEW latency_v AS SELECT seq, upper(note) AS note FROM latency_t")

        committed: dict[int, float] = {}
        arrived: dict[int, float] = {}
        done = threading.Event()

        def subscriber() -> None:
            with psycopg.connect(**conn) as reader:
                cur = reader.cursor()
                cur.execute("DECLARE c CURSOR FOR SUBSCRIBE latency_v WITH (snapshot = false)")
                while not done.is_set() or len(arrived) < len(committed):
                    cur.execute("FETCH ALL FROM c WITH (timeout = '500ms')")
                    now = time.monotonic()
                    for _, op, seq, _ in cur.fetchall():
                        if op == "insert":
                            arrived.setdefault(seq, now)
                    if done.is_set() and time.monotonic() - last_commit[0] > 5:
                        break

        last_commit = [time.monotonic()]
        reader = threading.Thread(target=subscriber)
        reader.start()
        time.sleep(0.5)  # the cursor is open before the first row (not a correctness wait)
        with psycopg.connect(autocommit=True, **conn) as writer:
            start = time.monotonic()
            seq = 0
            while time.monotonic() - start < args.seconds:
                due = start + seq / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                writer.execute("INSERT INTO latency_t VALUES (%s, 'x')", (seq,))
                committed[seq] = last_commit[0] = time.monotonic()
                seq += 1
        done.set()
        reader.join()
        admin.execute("DROP MATERIALIZED VIEW latency_v")
        admin.execute("DROP TABLE latency_t")

    latencies = sorted((arrived[s] - committed[s]) * 1000 for s in committed if s in arrived)
    missing = len(committed) - len(latencies)
    if not latencies:
        raise SystemExit("no row arrived")

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    print("barrier_ms rate rows p50_ms p99_ms max_ms missing")
    print(f"{args.barrier_ms} {args.rate:g} {len(latencies)} {pct(0.5):.1f} {pct(0.99):.1f} {latencies[-1]:.1f} {missing}")
    if missing:
        raise SystemExit(f"{missing} rows never arrived")


if __name__ == "__main__":
    main()
