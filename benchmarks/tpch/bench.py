#!/usr/bin/env python3
"""TPC-H side by side: PostgreSQL 15 and Sluice over the wire (psycopg),
DataFusion in-process (the `datafusion` Python package), same data, one run.

Started by benchmarks/tpch/run.sh, which generates the data and starts the
two servers; see the header of run.sh and benchmarks/README.md.

For each query and engine: one untimed warm-up (its rows are the ones
checked), then RUNS timed runs, of which the median is reported. Every
engine's rows are compared with every other engine's (row count, then the
values, numbers with a relative/absolute tolerance of 1e-6, strings with
trailing blanks ignored, in the query's order or else as a multiset). A
Sluice result that differs, or a Sluice error, is reported as MISMATCH or
FAILED in place of its speed-up, listed under "problems", and the exit
status is 1.
"""
import argparse
import datetime
import decimal
import math
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time

# TPC-H's tables as its specification defines them (clause 1.4), with the
# same physical types as tpchgen-cli's Parquet files (so DataFusion reads
# the same types as the two servers store): identifiers BIGINT, money and
# quantities DECIMAL(15,2), dates DATE. CHAR(n) columns are declared
# VARCHAR(n) on both servers, so that Postgres does not blank-pad them.
TABLES = [
    ("region", [
        ("r_regionkey", "BIGINT"), ("r_name", "VARCHAR(25)"), ("r_comment", "VARCHAR(152)"),
    ], ["r_regionkey"]),
    ("nation", [
        ("n_nationkey", "BIGINT"), ("n_name", "VARCHAR(25)"), ("n_regionkey", "BIGINT"),
        ("n_comment", "VARCHAR(152)"),
    ], ["n_nationkey"]),
    ("supplier", [
        ("s_suppkey", "BIGINT"), ("s_name", "VARCHAR(25)"), ("s_address", "VARCHAR(40)"),
        ("s_nationkey", "BIGINT"), ("s_phone", "VARCHAR(15)"), ("s_acctbal", "DECIMAL(15,2)"),
        ("s_comment", "VARCHAR(101)"),
    ], ["s_suppkey"]),
    ("customer", [
        ("c_custkey", "BIGINT"), ("c_name", "VARCHAR(25)"), ("c_address", "VARCHAR(40)"),
        ("c_nationkey", "BIGINT"), ("c_phone", "VARCHAR(15)"), ("c_acctbal", "DECIMAL(15,2)"),
        ("c_mktsegment", "VARCHAR(10)"), ("c_comment", "VARCHAR(117)"),
    ], ["c_custkey"]),
    ("part", [
        ("p_partkey", "BIGINT"), ("p_name", "VARCHAR(55)"), ("p_mfgr", "VARCHAR(25)"),
        ("p_brand", "VARCHAR(10)"), ("p_type", "VARCHAR(25)"), ("p_size", "INTEGER"),
        ("p_container", "VARCHAR(10)"), ("p_retailprice", "DECIMAL(15,2)"),
        ("p_comment", "VARCHAR(23)"),
    ], ["p_partkey"]),
    ("partsupp", [
        ("ps_partkey", "BIGINT"), ("ps_suppkey", "BIGINT"), ("ps_availqty", "INTEGER"),
        ("ps_supplycost", "DECIMAL(15,2)"), ("ps_comment", "VARCHAR(199)"),
    ], ["ps_partkey", "ps_suppkey"]),
    ("orders", [
        ("o_orderkey", "BIGINT"), ("o_custkey", "BIGINT"), ("o_orderstatus", "VARCHAR(1)"),
        ("o_totalprice", "DECIMAL(15,2)"), ("o_orderdate", "DATE"),
        ("o_orderpriority", "VARCHAR(15)"), ("o_clerk", "VARCHAR(15)"),
        ("o_shippriority", "INTEGER"), ("o_comment", "VARCHAR(79)"),
    ], ["o_orderkey"]),
    ("lineitem", [
        ("l_orderkey", "BIGINT"), ("l_partkey", "BIGINT"), ("l_suppkey", "BIGINT"),
        ("l_linenumber", "INTEGER"), ("l_quantity", "DECIMAL(15,2)"),
        ("l_extendedprice", "DECIMAL(15,2)"), ("l_discount", "DECIMAL(15,2)"),
        ("l_tax", "DECIMAL(15,2)"), ("l_returnflag", "VARCHAR(1)"),
        ("l_linestatus", "VARCHAR(1)"), ("l_shipdate", "DATE"), ("l_commitdate", "DATE"),
        ("l_receiptdate", "DATE"), ("l_shipinstruct", "VARCHAR(25)"),
        ("l_shipmode", "VARCHAR(10)"), ("l_comment", "VARCHAR(44)"),
    ], ["l_orderkey", "l_linenumber"]),
]

ENGINES = ("postgres", "sluice", "datafusion")
REL_TOL = 1e-6
ABS_TOL = 1e-6


def log(msg):
    print(f"[tpch] {msg}", file=sys.stderr, flush=True)


def create_table_sql(name, cols, pk, with_pk):
    parts = [f"{c} {t} NOT NULL" for c, t in cols]
    if with_pk:
        parts.append(f"PRIMARY KEY ({', '.join(pk)})")
    return f"CREATE TABLE {name} ({', '.join(parts)})"


class QueryFailed(Exception):
    pass


class QueryTimeout(Exception):
    pass


# --- engines -----------------------------------------------------------------

class WireEngine:
    """A server over the Postgres protocol; statement_timeout bounds a query,
    and a watchdog cancels, then cuts, a connection that outlives it."""

    def __init__(self, name, dsn, timeout_s):
        import psycopg
        self.psycopg = psycopg
        self.name, self.dsn, self.timeout_s = name, dsn, timeout_s
        self.conn = None

    def connect(self):
        if self.conn is not None and not self.conn.closed:
            return
        self.conn = self.psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute("SET statement_timeout = 0")  # loads are not limited
        self.limited = False

    def limit_statements(self):
        self.connect()
        if not self.limited:
            self.conn.execute(f"SET statement_timeout = {max(1, int(self.timeout_s * 1000))}")
            self.limited = True

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def execute(self, sql):
        self.connect()
        self.conn.execute(sql)

    def copy_csv(self, table, path):
        self.connect()
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
                with open(path, "rb") as f:
                    while True:
                        chunk = f.read(1 << 20)
                        if not chunk:
                            break
                        cp.write(chunk)

    def scalar(self, sql):
        self.connect()
        return self.conn.execute(sql).fetchone()[0]

    def run(self, sql):
        """Runs one query; returns (seconds, column names, rows)."""
        try:
            self.limit_statements()
        except self.psycopg.Error as e:  # the server went away, say
            self.close()
            raise QueryFailed(f"cannot connect: {type(e).__name__}: {one_line(e)}") from None
        conn = self.conn
        done = threading.Event()

        def watchdog():
            if done.wait(self.timeout_s + 30):
                return
            log(f"{self.name}: query still running 30 s past its timeout; cancelling")
            try:
                conn.cancel()
            except Exception:
                pass
            if done.wait(60):
                return
            log(f"{self.name}: cancel did not end it; closing the connection's socket")
            try:
                s = socket.socket(fileno=os.dup(conn.pgconn.socket))
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except Exception:
                pass

        dog = threading.Thread(target=watchdog, daemon=True)
        dog.start()
        t0 = time.perf_counter()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall() if cur.description else []
                cols = [d.name for d in cur.description] if cur.description else []
            elapsed = time.perf_counter() - t0
        except self.psycopg.errors.QueryCanceled as e:
            elapsed = time.perf_counter() - t0
            if elapsed >= self.timeout_s * 0.95:
                raise QueryTimeout(f"> {self.timeout_s:g} s") from None
            raise QueryFailed(f"{type(e).__name__} [{e.sqlstate}]: {one_line(e)}") from None
        except self.psycopg.Error as e:
            elapsed = time.perf_counter() - t0
            if conn.closed or conn.broken:
                self.close()
            if elapsed >= self.timeout_s:
                raise QueryTimeout(f"> {self.timeout_s:g} s") from None
            state = getattr(e, "sqlstate", None)
            raise QueryFailed(f"{type(e).__name__} [{state}]: {one_line(e)}") from None
        finally:
            done.set()
        return elapsed, cols, rows


def _datafusion_worker(pipe, parquet_dir, tables):
    """Child process: one DataFusion SessionContext over the Parquet files."""
    import pyarrow as pa
    from datafusion import SessionContext

    t0 = time.perf_counter()
    ctx = SessionContext()
    for t in tables:
        ctx.register_parquet(t, os.path.join(parquet_dir, f"{t}.parquet"))
    pipe.send(("ready", time.perf_counter() - t0))
    while True:
        msg = pipe.recv()
        if msg is None:
            return
        sql = msg
        try:
            t0 = time.perf_counter()
            df = ctx.sql(sql)
            batches = df.collect()
            elapsed = time.perf_counter() - t0
            if batches:
                table = pa.Table.from_batches(batches)
            else:
                table = pa.Table.from_batches([], schema=df.schema())
            cols = list(table.column_names)
            rows = list(zip(*[c.to_pylist() for c in table.columns])) if table.num_columns else []
            pipe.send(("ok", elapsed, cols, rows))
        except Exception as e:  # noqa: BLE001 - any engine error is a result
            pipe.send(("err", f"{type(e).__name__}: {one_line(e)}"))


class DataFusionEngine:
    """DataFusion in a child process, so a query past its timeout can be
    stopped (the process is killed and a fresh one started)."""

    name = "datafusion"

    def __init__(self, parquet_dir, tables, timeout_s):
        self.parquet_dir, self.tables, self.timeout_s = parquet_dir, tables, timeout_s
        self.proc = None
        self.pipe = None
        self.register_s = None

    def start(self):
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_datafusion_worker,
                                args=(child, self.parquet_dir, self.tables), daemon=True)
        self.proc.start()
        child.close()
        self.pipe = parent
        if not self.pipe.poll(300):
            raise RuntimeError("datafusion worker did not start in 300 s")
        kind, secs = self.pipe.recv()
        assert kind == "ready"
        if self.register_s is None:
            self.register_s = secs

    def stop(self):
        if self.proc is None:
            return
        try:
            self.pipe.send(None)
            self.proc.join(5)
        except Exception:
            pass
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def run(self, sql):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.pipe.send(sql)
        if not self.pipe.poll(self.timeout_s):
            self.proc.kill()
            self.proc.join()
            self.proc = None
            raise QueryTimeout(f"> {self.timeout_s:g} s")
        try:
            msg = self.pipe.recv()
        except EOFError:
            self.proc = None
            raise QueryFailed("datafusion worker died") from None
        if msg[0] == "err":
            raise QueryFailed(msg[1])
        _, elapsed, cols, rows = msg
        return elapsed, cols, rows


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def one_line(e):
    s = " ".join(str(e).split())
    return s if len(s) <= 400 else s[:400] + "…"


# --- result checks -------------------------------------------------------------

def norm(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, str):
        return v.rstrip()
    return str(v)


def values_equal(a, b):
    if a is None or b is None:
        return a is None and b is None
    num_a, num_b = isinstance(a, (int, float)), isinstance(b, (int, float))
    if num_a and num_b:
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if num_a or num_b:
        return False
    return a == b


def rows_equal(ra, rb):
    return len(ra) == len(rb) and all(values_equal(x, y) for x, y in zip(ra, rb))


def sort_key(row):
    key = []
    for v in row:
        if v is None:
            key.append((2, 0, ""))
        elif isinstance(v, (int, float)):
            key.append((0, float(f"{float(v):.9g}"), ""))
        else:
            key.append((1, 0, v))
    return key


def compare(rows_a, rows_b, name_a="a", name_b="b"):
    """None when equal, else a description of the first difference."""
    a = [tuple(norm(v) for v in r) for r in rows_a]
    b = [tuple(norm(v) for v in r) for r in rows_b]
    if len(a) != len(b):
        return f"{len(a)} rows from {name_a}, {len(b)} rows from {name_b}"
    if a and len(a[0]) != len(b[0]):
        return f"{len(a[0])} columns from {name_a}, {len(b[0])} columns from {name_b}"
    if all(rows_equal(x, y) for x, y in zip(a, b)):
        return None
    # Rows whose ORDER BY keys tie may come in another order: compare as multisets.
    sa, sb = sorted(a, key=sort_key), sorted(b, key=sort_key)
    diffs = [(x, y) for x, y in zip(sa, sb) if not rows_equal(x, y)]
    if not diffs:
        return None
    x, y = diffs[0]
    return f"{len(diffs)} of {len(a)} rows differ, e.g. {name_a} {x!r} vs {name_b} {y!r}"


# --- the run ---------------------------------------------------------------------

def load_wire(engine, data_csv, with_pk_in_create, add_pk_after, analyze, expected):
    """Creates and loads the tables; returns {phase: seconds}."""
    phases = {}
    for name, _, _ in reversed(TABLES):
        engine.execute(f"DROP TABLE IF EXISTS {name}")
    t0 = time.perf_counter()
    for name, cols, pk in TABLES:
        engine.execute(create_table_sql(name, cols, pk, with_pk_in_create))
        t1 = time.perf_counter()
        engine.copy_csv(name, os.path.join(data_csv, f"{name}.csv"))
        log(f"  {engine.name}: {name} loaded in {time.perf_counter() - t1:.2f} s")
    phases["copy"] = time.perf_counter() - t0
    if add_pk_after:
        t1 = time.perf_counter()
        for name, _, pk in TABLES:
            engine.execute(f"ALTER TABLE {name} ADD PRIMARY KEY ({', '.join(pk)})")
        phases["primary keys"] = time.perf_counter() - t1
    if analyze:
        t1 = time.perf_counter()
        engine.execute("VACUUM ANALYZE")
        phases["vacuum analyze"] = time.perf_counter() - t1
    phases["total"] = time.perf_counter() - t0
    for name, n in expected.items():
        got = engine.scalar(f"SELECT count(*) FROM {name}")
        if got != n:
            raise SystemExit(f"{engine.name}: {name} has {got} rows after the load, expected {n}")
    return phases


def fmt_time(res):
    status = res["status"]
    if status == "ok":
        return f"{res['median']:.3f}"
    if status == "timeout":
        return f">{res['timeout']:g}"
    return "FAILED"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with csv/ and parquet/")
    ap.add_argument("--queries", required=True, help="folder with q01.sql … q22.sql")
    ap.add_argument("--pg-dsn", required=True)
    ap.add_argument("--sluice-dsn", required=True)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--only", default="", help="comma-separated query names, e.g. q01,q06")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import pyarrow.parquet as pq

    csv_dir = os.path.join(args.data, "csv")
    pq_dir = os.path.join(args.data, "parquet")
    table_names = [t for t, _, _ in TABLES]
    expected = {t: pq.ParquetFile(os.path.join(pq_dir, f"{t}.parquet")).metadata.num_rows
                for t in table_names}

    names = sorted(f[:-4] for f in os.listdir(args.queries) if f.endswith(".sql"))
    if args.only:
        wanted = [q.strip() for q in args.only.split(",") if q.strip()]
        missing = [q for q in wanted if q not in names]
        if missing:
            raise SystemExit(f"no such queries: {', '.join(missing)}")
        names = wanted
    queries = {}
    for n in names:
        with open(os.path.join(args.queries, f"{n}.sql")) as f:
            text = f.read().strip()
        queries[n] = text[:-1].rstrip() if text.endswith(";") else text

    pg = WireEngine("postgres", args.pg_dsn, args.timeout)
    sl = WireEngine("sluice", args.sluice_dsn, args.timeout)
    df = DataFusionEngine(pq_dir, table_names, args.timeout)

    log(f"loading postgres (COPY, then primary keys, then VACUUM ANALYZE), SF {args.sf}")
    pg_load = load_wire(pg, csv_dir, with_pk_in_create=False, add_pk_after=True,
                        analyze=True, expected=expected)
    log(f"loading sluice (COPY into tables declared with their primary keys), SF {args.sf}")
    sl_load = load_wire(sl, csv_dir, with_pk_in_create=True, add_pk_after=False,
                        analyze=False, expected=expected)
    log("starting datafusion (registering the Parquet files)")
    df.start()
    engines = {"postgres": pg, "sluice": sl, "datafusion": df}

    results = {}  # query -> engine -> dict
    for q in names:
        results[q] = {}
        for e in ENGINES:
            eng = engines[e]
            res = {"status": "ok", "timeout": args.timeout, "times": []}
            try:
                _, res["cols"], res["rows"] = eng.run(queries[q])
                for i in range(args.runs):
                    elapsed, _, rows = eng.run(queries[q])
                    if len(rows) != len(res["rows"]):
                        raise QueryFailed(f"timed run {i + 1} returned {len(rows)} rows, "
                                          f"the warm-up {len(res['rows'])}")
                    res["times"].append(elapsed)
                res["median"] = statistics.median(res["times"])
            except QueryTimeout:
                res["status"] = "timeout"
            except QueryFailed as ex:
                res["status"] = "failed"
                res["error"] = str(ex)
            results[q][e] = res
            shown = fmt_time(res) + ("" if res["status"] != "failed" else f" ({res['error']})")
            log(f"{q} {e}: {shown}")
        check_query(results[q])
    df.stop()
    pg.close()
    sl.close()

    report, bad = render(args, results, names, pg_load, sl_load, df.register_s)
    print(report, end="")
    with open(args.out, "w") as f:
        f.write(report)
    return 1 if bad else 0


def check_query(per_engine):
    """Fills in res['check'] with the comparisons against the other engines."""
    done = [e for e in ENGINES if per_engine[e]["status"] == "ok"]
    for e in done:
        res = per_engine[e]
        others = [o for o in done if o != e]
        res["mismatch"] = {}
        for o in others:
            d = compare(res["rows"], per_engine[o]["rows"], e, o)
            if d is not None:
                res["mismatch"][o] = d
        res["checked_against"] = others


def sluice_verdict(per_engine):
    """'ok', 'unchecked', 'MISMATCH', 'FAILED' or 'TIMEOUT' for Sluice's result."""
    s = per_engine["sluice"]
    if s["status"] == "failed":
        return "FAILED"
    if s["status"] == "timeout":
        return "TIMEOUT"
    if s["mismatch"]:
        return "MISMATCH"
    if not s["checked_against"]:
        return "unchecked"
    return "ok"


def render(args, results, names, pg_load, sl_load, df_register_s):
    out = []
    w = out.append
    w(f"# TPC-H SF {args.sf}: postgres 15 and sluice over the wire (psycopg), "
      f"datafusion in-process; RUNS={args.runs} (median), QUERY_TIMEOUT_S={args.timeout:g}, "
      f"{os.cpu_count()} CPUs, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}")
    pg_parts = ", ".join(f"{k} {v:.2f} s" for k, v in pg_load.items() if k != "total")
    w(f"# load: postgres {pg_load['total']:.2f} s ({pg_parts}); "
      f"sluice {sl_load['total']:.2f} s (COPY); "
      f"datafusion {df_register_s:.2f} s (registers the Parquet files; nothing loaded)")
    hdr = ("query", "postgres_s", "sluice_s", "datafusion_s", "speedup_vs_pg", "sluice/df", "check")
    fmt = "{:<8} {:>11} {:>11} {:>13} {:>14} {:>10}  {}"
    w(fmt.format(*hdr))
    problems = []
    timeouts = []
    tot = {"pg": 0.0, "sl": 0.0, "df": 0.0, "n": 0, "pg_lb": False, "df_lb": False}
    for q in names:
        r = results[q]
        pg, sl, df = r["postgres"], r["sluice"], r["datafusion"]
        verdict = sluice_verdict(r)
        speedup = ratio = "-"
        if verdict in ("ok", "unchecked"):
            if pg["status"] == "ok":
                speedup = f"{pg['median'] / sl['median']:.2f}"
            elif pg["status"] == "timeout":
                speedup = f">{pg['timeout'] / sl['median']:.2f}"
            if df["status"] == "ok":
                ratio = f"{sl['median'] / df['median']:.2f}"
            elif df["status"] == "timeout":
                ratio = f"<{sl['median'] / df['timeout']:.2f}"
        else:
            speedup = ratio = verdict
        notes = []
        if verdict == "ok":
            notes.append(f"ok ({plural(len(sl['rows']), 'row')}, = " + ", ".join(sl["checked_against"]) + ")")
        elif verdict == "unchecked":
            notes.append("UNCHECKED (no other engine finished)")
            problems.append(f"{q}: sluice's result UNCHECKED: neither postgres nor datafusion finished")
        elif verdict == "MISMATCH":
            notes.append("sluice MISMATCH vs " + ", ".join(sl["mismatch"]))
            for o, d in sl["mismatch"].items():
                problems.append(f"{q}: sluice MISMATCH vs {o}: {d}")
        elif verdict == "FAILED":
            notes.append("sluice FAILED")
            problems.append(f"{q}: sluice FAILED: {sl['error']}")
        else:
            notes.append("sluice TIMEOUT")
            problems.append(f"{q}: sluice TIMEOUT (> {sl['timeout']:g} s)")
        for e in ("postgres", "datafusion"):
            res = r[e]
            if res["status"] == "failed":
                notes.append(f"{e} FAILED")
                problems.append(f"{q}: {e} FAILED: {res['error']}")
            elif res["status"] == "timeout":
                notes.append(f"{e} timeout")
                timeouts.append(f"{q} {e}")
        if pg["status"] == "ok" and df["status"] == "ok" and "datafusion" in pg["mismatch"]:
            notes.append("postgres != datafusion")
            problems.append(f"{q}: postgres and datafusion disagree: {pg['mismatch']['datafusion']}")
        w(fmt.format(q, fmt_time(pg), fmt_time(sl), fmt_time(df), speedup, ratio, "; ".join(notes)))
        # Totals: queries whose Sluice result was checked against both others.
        if verdict == "ok" and pg["status"] in ("ok", "timeout") and df["status"] in ("ok", "timeout"):
            tot["n"] += 1
            tot["sl"] += sl["median"]
            tot["pg"] += pg["median"] if pg["status"] == "ok" else pg["timeout"]
            tot["df"] += df["median"] if df["status"] == "ok" else df["timeout"]
            tot["pg_lb"] |= pg["status"] == "timeout"
            tot["df_lb"] |= df["status"] == "timeout"
    if tot["n"]:
        pg_s = (">" if tot["pg_lb"] else "") + f"{tot['pg']:.3f}"
        df_s = (">" if tot["df_lb"] else "") + f"{tot['df']:.3f}"
        speedup = (">" if tot["pg_lb"] else "") + f"{tot['pg'] / tot['sl']:.2f}"
        ratio = ("<" if tot["df_lb"] else "") + f"{tot['sl'] / tot['df']:.2f}"
        left_out = len(names) - tot["n"]
        note = ("1 query" if tot["n"] == 1 else f"{tot['n']} queries") + \
            (f" ({left_out} left out: Sluice's result not checked ok)" if left_out else "")
        if tot["pg_lb"] or tot["df_lb"]:
            note += "; a timeout counts as QUERY_TIMEOUT_S"
        w(fmt.format("total", pg_s, f"{tot['sl']:.3f}", df_s, speedup, ratio, note))
    else:
        w("total    no query whose sluice result was checked ok")
    w("speedup_vs_pg = postgres_s / sluice_s (higher is better for Sluice); "
      "sluice/df = sluice_s / datafusion_s (lower is better; the goal is <= 1.1)")
    if timeouts:
        w(f"timeouts (> {args.timeout:g} s, stopped): " + ", ".join(timeouts))
    if problems:
        w(f"problems ({len(problems)}):")
        for p in problems:
            w(f"  {p}")
    elif timeouts:
        w("problems: none (every answer that came back agrees with the others)")
    else:
        w("problems: none (every engine answered every query, and all answers agree)")
    bad = any("UNCHECKED" not in p for p in problems)
    return "\n".join(out) + "\n", bad


if __name__ == "__main__":
    sys.exit(main())
