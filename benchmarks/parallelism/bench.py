"""Keyed stages across cores: the same continuous GROUP BY, join and
SESSION aggregate over the Nexmark generator at streaming_parallelism 1 and
at N, side by side in one server (runs alternate, so both meet the same
machine noise). Reports bids/s of each and the speed-up, and checks both
views hold the same rows.

Usage: bench.py SLUICE_BINARY PORT [--events N] [--parallelism N] [--rounds N]
"""

import argparse
import os
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../sql-tests/clients"))
from crash_check import start  # noqa: E402

QUERIES = {
    "per_auction": "SELECT auction, count(*) AS n, max(price) AS hi, avg(price) AS mean FROM bid GROUP BY auction",
    "q5a": """SELECT auction, count(*) AS num, window_start, window_end
              FROM HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)
              GROUP BY auction, window_start, window_end""",
    # Every bid meets its auction: a keyed join whose state is both inputs.
    "bid_join_auction": """SELECT b.auction, b.price, a.seller, a.category
                           FROM bid b JOIN auction a ON b.auction = a.id""",
    "bidder_sessions": """SELECT bidder, window_start, window_end, count(*) AS n, sum(price) AS spent
                          FROM SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time),
                                       INTERVAL '2' SECOND)
                          GROUP BY bidder, window_start, window_end""",
}


def wait_finished(conn, name, timeout=1800):
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        status, error = conn.execute(
            "SELECT status, last_error FROM sluice_catalog.continuous_queries WHERE name = %s",
            (name,)).fetchone()
        if status == "finished":
            return time.monotonic() - began
        if status == "failed":
            raise RuntimeError(f"{name} failed: {error}")
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not finish")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("port", type=int)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="sluice-parallelism-")
    log = open(os.path.join(workdir, "server.log"), "ab")
    proc = start(args.binary, args.port, os.path.join(workdir, "data"), log)
    failed = False
    try:
        with psycopg.connect(host="127.0.0.1", port=args.port, user="sluice", dbname="sluice",
                             autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, "
                "date_time TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) "
                f"WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events' = '{args.events}', "
                "'events_per_second' = '0')")
            # The generator's proportions: 6 auctions to 92 bids.
            conn.execute(
                "CREATE TABLE auction (id BIGINT, seller BIGINT, category BIGINT, date_time TIMESTAMP, "
                "WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) "
                f"WITH ('connector' = 'nexmark', 'nexmark.table' = 'auction', "
                f"'events' = '{max(1, args.events * 6 // 92)}', 'events_per_second' = '0')")
            conn.execute("SET checkpoint_interval_ms = 0")
            print(f"# {args.events} Nexmark bids per run, best of {args.rounds}; "
                  f"parallelism 1 vs {args.parallelism}")
            for name, sql in QUERIES.items():
                best = {}
                for round_ in range(args.rounds):
                    for parallelism in (1, args.parallelism):
                        view = f"{name}_{parallelism}_{round_}"
                        conn.execute(f"SET streaming_parallelism = {parallelism}")
                        began = time.monotonic()
                        conn.execute(f"CREATE MATERIALIZED VIEW {view} AS {sql}")
                        seconds = (time.monotonic() - began) + wait_finished(conn, view)
                        best[parallelism] = min(best.get(parallelism, seconds), seconds)
                one, many = f"{name}_1_0", f"{name}_{args.parallelism}_0"
                (differ,) = conn.execute(
                    f"SELECT count(*) FROM ((SELECT * FROM {one} EXCEPT ALL SELECT * FROM {many}) "
                    f"UNION ALL (SELECT * FROM {many} EXCEPT ALL SELECT * FROM {one})) AS d").fetchone()
                (rows,) = conn.execute(f"SELECT count(*) FROM {one}").fetchone()
                rate1, rate_n = args.events / best[1], args.events / best[args.parallelism]
                print(f"  {name}: {rate1:,.0f} ev/s at 1, {rate_n:,.0f} ev/s at {args.parallelism}, "
                      f"speed-up {rate_n / rate1:.2f}x; {rows} rows, {differ} differ")
                failed |= differ != 0 or rows == 0
                for round_ in range(args.rounds):
                    for parallelism in (1, args.parallelism):
                        conn.execute(f"DROP MATERIALIZED VIEW {name}_{parallelism}_{round_}")
    finally:
        proc.kill()
        proc.wait()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
