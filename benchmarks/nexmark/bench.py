"""Nexmark side by side: Sluice's continuous queries vs Apache Flink.

Run by run.sh (which starts the Sluice server and provides the Python
environment); see the Nexmark section of benchmarks/README.md for what is measured and how.

Steps:
1. Sluice's Nexmark generator writes EVENTS events (persons, auctions and
   bids in the generator's 1:3:46 proportion) to one CSV file per kind;
   both engines read these files and nothing else.
2. The files are loaded into Sluice tables that declare the same
   watermark as Flink's tables (untimed).
3. For every query: Sluice runs it as `CREATE MATERIALIZED VIEW`, which
   returns once the view holds the result of the table's rows (timed);
   Flink runs it as one streaming job over the CSV files (timed); the two
   results are compared as multisets of rows.
"""

import argparse
import os
import sys
import time
import traceback
from collections import Counter
from datetime import datetime

import pandas as pd
import psycopg

from queries import COLUMNS, QUERIES, WATERMARK_DELAY_S, column_type, columns_ddl

# The generator emits, in every 50 events, 1 person, 3 auctions and 46
# bids; taking these shares of a multiple of 50 gives three tables that
# cover the same stretch of event time (so joins between them make sense).
SHARES = {"person": 1, "auction": 3, "bid": 46}

# DataFusion's CSV writer spells timestamps with a 'T' by default; Flink's
# CSV format reads SQL's 'yyyy-MM-dd HH:mm:ss.SSS'.
CSV_OPTIONS = "OPTIONS ('format.has_header' 'false', 'format.timestamp_format' '%Y-%m-%d %H:%M:%S%.3f')"


def log(message: str):
    print(f"[nexmark] {message}", file=sys.stderr, flush=True)


def table_rows(events: int) -> dict:
    return {kind: events // 50 * share for kind, share in SHARES.items()}


# ---------------------------------------------------------------- Sluice --

class Refused(Exception):
    """Sluice would not create the continuous query."""


class Sluice:
    def __init__(self, port: int):
        self.conn = psycopg.connect(host="127.0.0.1", port=port, user="sluice",
                                    dbname="sluice", autocommit=True)

    def execute(self, sql: str):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            if cur.description is None:
                return None, None
            return [d.name for d in cur.description], cur.fetchall()

    def generate_and_load(self, rows: dict, event_rate: int, data_dir: str):
        """Writes each kind's CSV file from the generator, then loads that
        file (not the generator) into the table the queries read."""
        for kind, count in rows.items():
            path = os.path.join(data_dir, f"{kind}.csv")
            cols = ", ".join(f"{c} {t}" for c, t in _plain_columns(kind))
            self.execute(
                f"CREATE TABLE {kind}_gen ({cols}) WITH ('connector' = 'nexmark', "
                f"'nexmark.table' = '{kind}', 'events' = '{count}', "
                f"'nexmark.event_rate' = '{event_rate}')"
            )
            t0 = time.perf_counter()
            # In event-time order: the generator's scan is split into
            # partitions that COPY writes in whichever order they finish, and
            # Flink would drop every event that arrives behind its watermark.
            self.execute(f"COPY (SELECT * FROM {kind}_gen ORDER BY date_time) TO '{path}' "
                         f"STORED AS CSV {CSV_OPTIONS}")
            log(f"{kind}: {count} events -> {path} "
                f"({os.path.getsize(path) / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s)")
            self.execute(f"DROP TABLE {kind}_gen")
            _check_event_order(path, kind)

            self.execute(f"CREATE TABLE {kind} ({columns_ddl(kind, 'sluice')})")
            t0 = time.perf_counter()
            with self.conn.cursor() as cur, open(path, "rb") as f:
                with cur.copy(f"COPY {kind} FROM STDIN WITH (FORMAT csv)") as copy:
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
            _, [(loaded,)] = self.execute(f"SELECT count(*) FROM {kind}")
            if loaded != count:
                raise RuntimeError(f"Sluice table {kind} holds {loaded} rows, expected {count}")
            log(f"{kind}: loaded into Sluice in {time.perf_counter() - t0:.1f} s")

    def max_event_time_ms(self, table: str) -> int:
        _, [(latest,)] = self.execute(f"SELECT max(date_time) FROM {table}")
        return _datetime_ms(latest)

    def continuous(self, name: str, sql: str) -> dict:
        """Runs `sql` as a materialized view; its time is the CREATE
        statement's (the backfill over the table's rows)."""
        t0 = time.perf_counter()
        try:
            self.execute(f"CREATE MATERIALIZED VIEW {name} AS {sql}")
        except psycopg.Error as error:
            if error.sqlstate is None:  # not an answer: the connection broke
                raise
            raise Refused(sluice_error(error)) from error
        seconds = time.perf_counter() - t0
        try:
            self.execute("FLUSH")
            cols, [status] = self.execute(
                "SELECT rows_in, rows_out, late_rows_dropped, view_rows, last_error "
                f"FROM sluice_catalog.continuous_queries WHERE name = '{name}'"
            )
            columns, rows = self.execute(f"SELECT * FROM {name}")
        finally:
            self.execute(f"DROP MATERIALIZED VIEW {name}")
        return {"seconds": seconds, "status": dict(zip(cols, status)),
                "result": pd.DataFrame(rows, columns=columns)}

    def one_off(self, sql: str):
        t0 = time.perf_counter()
        columns, rows = self.execute(sql)
        return time.perf_counter() - t0, pd.DataFrame(rows, columns=columns)


def _check_event_order(path: str, kind: str):
    """Both engines drop events that arrive behind the watermark; the files
    must hold none, or the engines would be compared on different inputs."""
    times = pd.read_csv(path, header=None, usecols=[COLUMNS[kind].index("date_time")]).iloc[:, 0]
    behind = int((times < times.cummax()).sum())
    if behind:
        raise RuntimeError(f"{path}: {behind} events behind an earlier event's date_time")


def _plain_columns(kind: str):
    return [(c, column_type(c, "sluice")) for c in COLUMNS[kind]]


def _datetime_ms(value: datetime) -> int:
    return int(pd.Timestamp(value).value // 1_000_000)


def sluice_error(error: Exception) -> str:
    diag = getattr(error, "diag", None)
    message = diag.message_primary if diag is not None and diag.message_primary else str(error)
    return " ".join(message.split())


# ------------------------------------------------------------ comparison --

def normalize(df: pd.DataFrame, approx: set) -> pd.DataFrame:
    """Values both engines agree on: timestamps as epoch milliseconds,
    decimals/doubles of `approx` columns rounded to 3 places."""
    out = {}
    for col in df.columns:
        s = df[col]
        if len(s) and (pd.api.types.is_datetime64_any_dtype(s)
                       or isinstance(s.iloc[0], (datetime, pd.Timestamp))):
            s = pd.to_datetime(s).astype("datetime64[ms]").astype("int64")
        elif col in approx:
            s = s.astype("float64").round(3)
        out[col.lower()] = s
    return pd.DataFrame(out, columns=[c.lower() for c in df.columns])


def multiset(df: pd.DataFrame) -> Counter:
    return Counter(zip(*(df[c].tolist() for c in df.columns)))


def compare(flink: pd.DataFrame, sluice: pd.DataFrame, approx: set) -> tuple:
    """(equal, description)."""
    flink, sluice = normalize(flink, approx), normalize(sluice, approx)
    if list(flink.columns) != list(sluice.columns):
        return False, f"columns differ: flink {list(flink.columns)}, sluice {list(sluice.columns)}"
    f, s = multiset(flink), multiset(sluice)
    if f == s:
        return True, f"equal ({len(flink)} rows)"
    missing, extra = f - s, s - f
    text = (f"flink {len(flink)} rows, sluice {len(sluice)}; "
            f"{sum(missing.values())} only in flink, {sum(extra.values())} only in sluice")
    for label, rows in (("only in flink", missing), ("only in sluice", extra)):
        for row in list(rows)[:3]:
            text += f"\n      {label}: {row}"
    return False, text


def closed_windows(df: pd.DataFrame, column: str, cutoff_ms: int,
                   size_ms: int = 0) -> pd.DataFrame:
    ends = pd.to_datetime(df[column]).astype("datetime64[ms]").astype("int64")
    if size_ms:
        # A time inside a tumbling window (or its start): the window's end.
        ends = (ends // size_ms) * size_ms + size_ms
    return df[ends <= cutoff_ms]


# ------------------------------------------------------------------ main --

def fmt_rate(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--event-rate", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out-file", required=True)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--queries", default=",".join(q.name for q in QUERIES))
    args = parser.parse_args()

    rows = table_rows(args.events)
    total_events = sum(rows.values())
    wanted = args.queries.split(",")
    unknown = set(wanted) - {q.name for q in QUERIES}
    if unknown:
        sys.exit(f"unknown queries: {sorted(unknown)}")

    sluice = Sluice(args.port)
    sluice.generate_and_load(rows, args.event_rate, args.data_dir)
    window_cutoff_ms = sluice.max_event_time_ms("bid") - WATERMARK_DELAY_S * 1000

    # Started after the data is ready, so the JVM's start-up does not
    # compete with the export; it idles while Sluice runs.
    from flink_runner import FlinkRunner
    t0 = time.perf_counter()
    flink = FlinkRunner(args.data_dir, args.parallelism)
    sample = os.path.join(args.data_dir, "bid_sample.csv")
    with open(os.path.join(args.data_dir, "bid.csv"), "rb") as src, open(sample, "wb") as dst:
        for _, line in zip(range(1000), src):
            dst.write(line)
    job_overhead = flink.warm_up(sample)
    log(f"flink: mini-cluster up and warmed in {time.perf_counter() - t0:.1f} s; "
        f"a 1000-row job takes {job_overhead:.2f} s")

    lines, details, failed = [], [], False
    for query in [q for q in QUERIES if q.name in wanted]:
        events = sum(rows[t] for t in query.tables)
        log(f"{query.name}: {events} events from {'+'.join(query.tables)}")
        sluice_rate = flink_rate = None
        status, detail = "", []
        sluice_result = None

        # Sluice: the continuous query, or its refusal and then the same
        # SQL one-off, whose result still checks Flink's.
        try:
            if sluice.conn.closed:
                raise psycopg.OperationalError("no connection to Sluice (it failed earlier)")
            run = sluice.continuous(query.name, query.sluice)
            sluice_rate = events / run["seconds"]
            sluice_result = run["result"]
            st = run["status"]
            detail.append(f"sluice: {run['seconds']:.2f} s; rows_in {st['rows_in']}, "
                          f"view_rows {st['view_rows']}, late_rows_dropped {st['late_rows_dropped']}"
                          + (f", last_error {st['last_error']}" if st["last_error"] else ""))
            if st["rows_in"] != events * query.reads_each:
                status = f"sluice read {st['rows_in']} of {events * query.reads_each} rows"
            if not query.sluice_continuous:
                detail.append("sluice: ran a query expected to be refused")
        except Refused as refusal:
            message = str(refusal)
            # A query Sluice ran before and now refuses is a regression.
            verdict = "refused" if not query.sluice_continuous else "sluice failed"
            status = f"{verdict}: {message}"
            detail.append(f"sluice: {status}")
            try:
                seconds, sluice_result = sluice.one_off(query.sluice)
                detail.append(f"sluice one-off (batch) query instead: {seconds:.2f} s, "
                              f"{len(sluice_result)} rows")
            except psycopg.Error as error:
                detail.append(f"sluice one-off query failed too: {sluice_error(error)}")
        except psycopg.Error as error:
            sluice_rate = None
            status = f"sluice failed: {sluice_error(error)}"
            detail.append(status)
            if sluice.conn.closed:
                log("the connection to Sluice is gone (see its log); Flink goes on alone")

        # Flink.
        flink_result = None
        try:
            seconds = flink.time_query(query.flink)
            flink_rate = events / seconds
            flink_result = flink.result(query.flink)
            detail.append(f"flink: {seconds:.2f} s; {len(flink_result)} result rows")
        except Exception as error:  # py4j errors carry the Java stack
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            detail.append(f"flink: failed: {first}")
            status = status or f"flink failed: {first}"
            traceback.print_exc()

        # Results.
        if query.open_tail and sluice_rate is not None:
            detail.append("results not compared: the rows carry no window, so windows still "
                          "open when the input ends cannot be left out")
            status = status or "unchecked (open windows)"
        elif flink_result is not None and sluice_result is not None:
            if query.window_end and sluice_rate is not None:
                open_flink = len(flink_result)
                size = query.window_size_ms
                flink_result = closed_windows(flink_result, query.window_end,
                                              window_cutoff_ms, size)
                beyond = len(sluice_result) - len(
                    closed_windows(sluice_result, query.window_end, window_cutoff_ms, size))
                detail.append(f"compared windows ending <= max(bid.date_time) - {WATERMARK_DELAY_S} s: "
                              f"flink {open_flink - len(flink_result)} rows of later windows left out; "
                              f"sluice rows of later windows: {beyond}")
                if beyond:
                    status = status or f"MISMATCH: sluice emitted {beyond} rows of open windows"
            equal, text = compare(flink_result, sluice_result, query.approx)
            against = "sluice view" if sluice_rate is not None else "sluice one-off"
            detail.append(f"flink vs {against}: {text}")
            if not equal:
                if status.startswith("refused"):
                    status += " [MISMATCH: Sluice's one-off result differs from Flink's]"
                    failed = True
                else:
                    status = status or "MISMATCH"
        elif sluice_rate is not None and not status:
            status = "unchecked"
        if not status:
            status = "ok"
        if query.variant:
            status += f" (variant: {query.variant})"
        failed |= status.startswith(("MISMATCH", "flink failed", "sluice failed", "sluice read"))

        ratio = sluice_rate / flink_rate if sluice_rate and flink_rate else None
        # Flink's time less its per-job overhead (what any job costs, even
        # an empty one): the ratio if job start-up were free.
        flink_work_s = events / flink_rate - job_overhead if flink_rate else None
        bare = (sluice_rate * flink_work_s / events
                if sluice_rate and flink_work_s and flink_work_s > 0 else None)
        lines.append((query.name, fmt_rate(sluice_rate), fmt_rate(flink_rate),
                      "-" if ratio is None else f"{ratio:.2f}",
                      "-" if bare is None else f"{bare:.2f}", status))
        details.append((query.name, events, query.note, detail))
        log(f"{query.name}: {lines[-1][1:]}")

    header = ("query", "sluice_events_per_s", "flink_events_per_s", "ratio",
              "ratio_less_job_overhead", "status")
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(5)]
    table = [" ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r[:5], widths))) + "  " + r[5]
             for r in [header] + lines]
    out = [f"Nexmark, {total_events} events ({rows['person']} persons, {rows['auction']} "
           f"auctions, {rows['bid']} bids; {args.event_rate} events per second of event time), "
           f"parallelism {args.parallelism}; ratio = sluice / flink; ratio_less_job_overhead: "
           f"the same with Flink's per-job overhead ({job_overhead:.2f} s) taken off its time",
           *table, "", "details:"]
    for name, events, note, detail in details:
        out.append(f"  {name} ({events} input events; {note})")
        out.extend(f"    {d}" for d in detail)
    out.append(f"  flink per-job overhead (a 1000-row job, warm): {job_overhead:.2f} s")
    text = "\n".join(out)
    print(text)
    with open(args.out_file, "w") as f:
        f.write(text + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
