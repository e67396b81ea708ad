#!/usr/bin/env python3
"""Mixed concurrent load over the Postgres wire protocol (asyncpg).

CLIENTS connections, each its own asyncio task, loop for DURATION seconds
over a seeded, weighted mix of statements against a table
`t(id BIGINT, name TEXT, score DOUBLE PRECISION)` preloaded with PRELOAD rows
(ids 1..PRELOAD, name 'name-<id>', score (id % 1000) / 10):

  insert  INSERT INTO t VALUES ($1, $2, $3)           a fresh id per insert
  point   SELECT name, score FROM t WHERE id = $1      a preloaded id: 1 row
  scan    SELECT count(*), avg(score) FROM t
          WHERE id BETWEEN $1 AND $1 + 1000            1,001 preloaded rows
  embed   Sluice: SELECT EMBED('minilm', $1)           a 384-float vector
          Postgres: SELECT md5($1)                     a stand-in of the same
                                                       shape (one text in, one
                                                       value out); NOT comparable

Every statement is autocommit and prepared (asyncpg's statement cache). Each
result is checked (the point row's name, the scan's count and average, the
vector's length, the md5's length); a wrong result counts as an error, as
does any exception and any statement still running after --statement-timeout
seconds. Inserted ids are unique per client (1e9 + client * 1e7 + n), so no
insert touches the preloaded range that the point queries and scans read.
After the run `count(*)` must equal PRELOAD plus the inserts acknowledged.

With --server-pid the server's VmRSS is read from /proc every 0.5 s (a
thread, so a busy event loop does not stretch the interval) and its VmHWM
(the kernel's own peak) at the end; with --memory-limit the run fails when
either is above it.

Subcommands:
  run     set up (unless --no-setup), run the mix, verify, write --json
  report  print the side-by-side table of two `run` results (postgres, sluice)

The run's exit status is non-zero on any error, a missing row or a peak above
the memory limit; the first errors are printed grouped by statement kind,
SQLSTATE and message.

Latencies are measured in the client: the time from sending a statement to
its last row, including the wait for the client's own event loop, which
serves all CLIENTS connections from one Python thread.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time

import asyncpg

KINDS = ("insert", "point", "scan", "embed")
DEFAULT_MIX = "insert=20,point=40,scan=30,embed=10"
SCAN_WIDTH = 1000
EMBED_MODEL = "minilm"
EMBED_DIMS = 384
WORDS = (
    "cat dog river stone cloud paper engine quiet bright music table window green "
    "winter orange signal garden market ocean rapid silver forest candle yellow "
    "morning planet copper thunder valley mirror bridge shadow harbor lantern"
).split()
FIRST_ID = 1_000_000_000
IDS_PER_CLIENT = 10_000_000


def parse_mix(text):
    weights = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise SystemExit(f"unknown statement kind {kind!r} in --mix (kinds: {', '.join(KINDS)})")
        weights[kind] = float(weight)
    if sum(weights.values()) <= 0:
        raise SystemExit("--mix has no positive weight")
    return weights


def parse_size(text):
    """`2GiB`, `512MB`, `1000000` -> bytes (the server's --memory-limit forms)."""
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    t = text.strip().lower()
    i = len(t)
    while i > 0 and t[i - 1].isalpha():
        i -= 1
    number, unit = t[:i].strip(), t[i:]
    if unit not in units:
        raise SystemExit(f"bad size {text!r}")
    return int(float(number) * units[unit])


class RssSampler(threading.Thread):
    """VmRSS of PID every INTERVAL seconds; VmHWM read at stop()."""

    def __init__(self, pid, interval=0.5):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self.hwm = 0
        self.lost = False
        self._stop_event = threading.Event()

    def read(self):
        out = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value = line.split(":", 1)
                        out[key] = int(value.split()[0]) * 1024
        except OSError:
            self.lost = True
        return out

    def run(self):
        while not self._stop_event.is_set():
            rss = self.read().get("VmRSS")
            if rss is not None:
                self.peak = max(self.peak, rss)
                self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        status = self.read()
        self.hwm = status.get("VmHWM", 0)
        self.peak = max(self.peak, status.get("VmRSS", 0))


class Stats:
    def __init__(self):
        self.latencies = {k: [] for k in KINDS}
        self.errors = []  # (kind, sqlstate, message, statement, params)
        self.inserted = 0  # inserts acknowledged

    def error(self, kind, sqlstate, message, sql, params):
        self.errors.append((kind, sqlstate, message, sql, repr(params)[:200]))


def statements(engine):
    embed = (f"SELECT EMBED('{EMBED_MODEL}', $1)" if engine == "sluice" else "SELECT md5($1)")
    return {
        "insert": "INSERT INTO t VALUES ($1, $2, $3)",
        "point": "SELECT name, score FROM t WHERE id = $1",
        "scan": f"SELECT count(*), avg(score) FROM t WHERE id BETWEEN $1 AND $1 + {SCAN_WIDTH}",
        "embed": embed,
    }


def expected_scan(lo):
    ids = range(lo, lo + SCAN_WIDTH + 1)
    return len(ids), sum((i % 1000) / 10 for i in ids) / len(ids)


async def connect(args, engine):
    conn = await asyncpg.connect(host=args.host, port=args.port, user=args.user,
                                 database=args.dbname, timeout=30)
    if engine == "sluice":
        from pgvector.asyncpg import register_vector
        # Sluice registers `vector` in pg_catalog.
        await register_vector(conn, schema="pg_catalog")
    return conn


async def setup(args, engine):
    conn = await connect(args, engine)
    try:
        await conn.execute("DROP TABLE IF EXISTS t")
        await conn.execute("CREATE TABLE t (id BIGINT, name TEXT, score DOUBLE PRECISION)")
        batch = 50_000
        for lo in range(1, args.preload + 1, batch):
            hi = min(lo + batch, args.preload + 1)
            await conn.copy_records_to_table(
                "t", records=[(i, f"name-{i}", (i % 1000) / 10) for i in range(lo, hi)])
        if args.pg_index and engine == "postgres":
            await conn.execute("CREATE INDEX t_id ON t (id)")
        if engine == "postgres":
            await conn.execute("ANALYZE t")
        n = await conn.fetchval("SELECT count(*) FROM t")
        if n != args.preload:
            raise SystemExit(f"{engine}: preload holds {n} rows, wanted {args.preload}")
        # Warm up: the first EMBED loads the model.
        if parse_mix(args.mix).get("embed", 0) > 0:
            await conn.fetchval(statements(engine)["embed"], "warm up")
    finally:
        await conn.close()


async def client(args, engine, cid, weights, deadline, stats, conns):
    rng = random.Random(args.seed * 100_003 + cid)
    sql = statements(engine)
    kinds = list(weights)
    cum = list(weights.values())
    next_id = FIRST_ID + cid * IDS_PER_CLIENT
    conn = conns[cid]
    timeout = args.statement_timeout
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, cum)[0]
        if kind == "insert":
            params = (next_id, f"client-{cid}-{next_id}", rng.random() * 100)
            next_id += 1
        elif kind == "point":
            params = (rng.randint(1, args.preload),)
        elif kind == "scan":
            params = (rng.randint(1, args.preload - SCAN_WIDTH),)
        else:
            params = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))),)
        t0 = time.perf_counter()
        try:
            if kind == "insert":
                status = await conn.execute(sql[kind], *params, timeout=timeout)
                result = status
            else:
                result = await conn.fetch(sql[kind], *params, timeout=timeout)
        except asyncpg.PostgresError as e:
            stats.error(kind, getattr(e, "sqlstate", None) or "?", str(e), sql[kind], params)
            continue
        except (asyncio.TimeoutError, Exception) as e:  # no answer in time, connection lost, …
            if isinstance(e, asyncio.TimeoutError):
                stats.error(kind, "timeout", f"no answer within {timeout} s (client-side)", sql[kind], params)
            else:
                stats.error(kind, type(e).__name__, str(e), sql[kind], params)
            # The connection may be stuck or gone: replace it.
            conn.terminate()
            try:
                conn = conns[cid] = await connect(args, engine)
            except Exception as e2:
                stats.error(kind, type(e2).__name__, f"reconnect failed: {e2}", "connect", ())
                return
            continue
        latency = time.perf_counter() - t0
        bad = check_result(kind, engine, params, result)
        if bad:
            stats.error(kind, "wrong result", bad, sql[kind], params)
            continue
        if kind == "insert":
            stats.inserted += 1
        stats.latencies[kind].append(latency)


def check_result(kind, engine, params, result):
    """None when RESULT is what the statement must return, else why not."""
    if kind == "insert":
        return None if result == "INSERT 0 1" else f"status {result!r}"
    if kind == "point":
        want = [(f"name-{params[0]}", (params[0] % 1000) / 10)]
        got = [tuple(r) for r in result]
        return None if got == want else f"got {got!r}, want {want!r}"
    if kind == "scan":
        count, avg = expected_scan(params[0])
        if len(result) != 1:
            return f"{len(result)} rows"
        got_count, got_avg = result[0][0], result[0][1]
        if got_count != count or got_avg is None or abs(got_avg - avg) > 1e-6:
            return f"got ({got_count}, {got_avg}), want ({count}, {avg})"
        return None
    if len(result) != 1:
        return f"{len(result)} rows"
    value = result[0][0]
    if engine == "sluice":
        return None if value is not None and len(value) == EMBED_DIMS else f"vector of {None if value is None else len(value)} floats"
    return None if isinstance(value, str) and len(value) == 32 else f"md5 {value!r}"


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


async def run(args):
    engine = args.engine
    weights = parse_mix(args.mix)
    limit = parse_size(args.memory_limit) if args.memory_limit else None
    sampler = RssSampler(args.server_pid) if args.server_pid else None
    if sampler:
        sampler.start()
    if not args.no_setup:
        t0 = time.monotonic()
        await setup(args, engine)
        print(f"[mixed] {engine}: preloaded {args.preload} rows in {time.monotonic() - t0:.1f} s",
              file=sys.stderr, flush=True)
    conns = await asyncio.gather(*(connect(args, engine) for _ in range(args.clients)))
    conns = list(conns)
    stats = Stats()
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(*(client(args, engine, c, weights, deadline, stats, conns)
                           for c in range(args.clients)))
    elapsed = time.monotonic() - start
    for c in conns:
        try:
            await asyncio.wait_for(c.close(), 10)
        except Exception:
            c.terminate()

    # Every acknowledged insert is there, nothing else.
    verify = await connect(args, engine)
    try:
        rows = await verify.fetchval("SELECT count(*) FROM t")
        preload_rows = await verify.fetchval("SELECT count(*) FROM t WHERE id < $1", FIRST_ID)
    finally:
        await verify.close()
    if sampler:
        sampler.stop()

    result = {
        "engine": engine,
        "clients": args.clients,
        "duration_s": args.duration,
        "elapsed_s": elapsed,
        "mix": weights,
        "preload": args.preload,
        "pg_index": bool(args.pg_index and engine == "postgres"),
        "kinds": {},
        "total_ok": sum(len(v) for v in stats.latencies.values()),
        "errors": len(stats.errors),
        "first_errors": [],
        "inserted": stats.inserted,
        "rows_after": rows,
        "preload_rows_after": preload_rows,
        "rows_ok": rows == args.preload + stats.inserted and preload_rows == args.preload,
        "memory_limit": limit,
        "peak_rss": sampler.peak if sampler else None,
        "vm_hwm": sampler.hwm if sampler else None,
        "rss_samples": sampler.samples if sampler else 0,
        "server_gone": sampler.lost if sampler else False,
    }
    result["qps"] = result["total_ok"] / elapsed
    for kind in KINDS:
        lat = sorted(stats.latencies[kind])
        result["kinds"][kind] = {
            "ok": len(lat),
            "errors": sum(1 for e in stats.errors if e[0] == kind),
            "qps": len(lat) / elapsed,
            "p50_ms": None if not lat else percentile(lat, 0.50) * 1000,
            "p99_ms": None if not lat else percentile(lat, 0.99) * 1000,
        }
    groups = {}
    for kind, sqlstate, message, sql, params in stats.errors:
        key = (kind, sqlstate, message[:300])
        g = groups.setdefault(key, {"kind": kind, "sqlstate": sqlstate, "message": message[:300],
                                    "statement": sql, "params": params, "count": 0})
        g["count"] += 1
    result["first_errors"] = sorted(groups.values(), key=lambda g: -g["count"])[:20]

    failures = []
    if stats.errors:
        failures.append(f"{len(stats.errors)} errors")
    if not result["rows_ok"]:
        failures.append(f"count(*) = {rows} ({preload_rows} preloaded), want {args.preload} preloaded "
                        f"+ {stats.inserted} inserted = {args.preload + stats.inserted}")
    if sampler and sampler.lost:
        failures.append("the server process went away during the run")
    if limit is not None and sampler and max(sampler.peak, sampler.hwm) >= limit:
        failures.append(f"server memory peaked at {max(sampler.peak, sampler.hwm)} bytes "
                        f"(VmRSS sampled {sampler.peak}, VmHWM {sampler.hwm}), limit {limit}")
    result["failures"] = failures
    return result


def print_errors(result, out=sys.stderr):
    for g in result["first_errors"]:
        print(f"[mixed] {result['engine']} ERROR x{g['count']} {g['kind']} SQLSTATE {g['sqlstate']}: "
              f"{g['message']}\n        statement: {g['statement']}  params: {g['params']}",
              file=out, flush=True)


def mib(n):
    return "-" if n is None else f"{n / 2**20:,.0f}"


def fmt_ms(x):
    return "-" if x is None else f"{x:,.1f}"


def report(pg, sl, out):
    lines = []
    p = lines.append
    p(f"# concurrency: sluice vs postgres 15, {sl['clients']} clients, {sl['duration_s']} s each, "
      f"mix {','.join(f'{k}={v:g}' for k, v in sl['mix'].items())}, preload {sl['preload']} rows, "
      f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    p("# embed: sluice runs EMBED('minilm', text); postgres runs md5(text) as a stand-in: NOT comparable")
    if pg.get("pg_index"):
        p("# postgres has a B-tree index on t(id); sluice has none")
    p(f"{'kind':<8} {'pg_ok':>9} {'pg_err':>6} {'pg_qps':>9} {'pg_p50_ms':>9} {'pg_p99_ms':>9} "
      f"{'sl_ok':>9} {'sl_err':>6} {'sl_qps':>9} {'sl_p50_ms':>9} {'sl_p99_ms':>9} {'qps_ratio':>9} "
      f"{'p50_ratio':>9}")
    for kind in KINDS:
        a, b = pg["kinds"][kind], sl["kinds"][kind]
        # In a closed loop every kind's QPS follows its weight, so per kind
        # only the latency tells the engines apart.
        lat = (f"{b['p50_ms'] / a['p50_ms']:.2f}" if a["p50_ms"] and b["p50_ms"] is not None else "n/a")
        if kind == "embed":
            lat = "n/c"
        p(f"{kind:<8} {a['ok']:>9,} {a['errors']:>6} {a['qps']:>9,.1f} {fmt_ms(a['p50_ms']):>9} "
          f"{fmt_ms(a['p99_ms']):>9} {b['ok']:>9,} {b['errors']:>6} {b['qps']:>9,.1f} "
          f"{fmt_ms(b['p50_ms']):>9} {fmt_ms(b['p99_ms']):>9} {'':>9} {lat:>9}")
    ratio = f"{sl['qps'] / pg['qps']:.2f}" if pg["qps"] > 0 else "n/a"
    p(f"{'all':<8} {pg['total_ok']:>9,} {pg['errors']:>6} {pg['qps']:>9,.1f} {'':>9} {'':>9} "
      f"{sl['total_ok']:>9,} {sl['errors']:>6} {sl['qps']:>9,.1f} {'':>9} {'':>9} {ratio:>9} {'':>9}")
    p("# qps_ratio = sluice / postgres (higher is better for Sluice); p50_ratio = sluice p50 / postgres p50 "
      "(lower is better); n/c = not comparable")
    for r in (pg, sl):
        p(f"# {r['engine']}: {r['inserted']:,} inserts acknowledged, count(*) after = {r['rows_after']:,} "
          f"({'ok' if r['rows_ok'] else 'MISMATCH'})")
    if not sl["rss_samples"]:
        verdict = "NOT MEASURED"
    elif not sl["memory_limit"]:
        verdict = "no limit"
    elif max(sl["peak_rss"], sl["vm_hwm"]) < sl["memory_limit"]:
        verdict = "under"
    else:
        verdict = "OVER"
    p(f"# sluice memory: peak VmRSS {mib(sl['peak_rss'])} MiB ({sl['rss_samples']} samples every 0.5 s), "
      f"VmHWM {mib(sl['vm_hwm'])} MiB, --memory-limit {mib(sl['memory_limit'])} MiB ({verdict})")
    for r in (pg, sl):
        if r["failures"]:
            p(f"# {r['engine']} FAILED: {'; '.join(r['failures'])}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
    return 1 if pg["failures"] or sl["failures"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--engine", choices=("sluice", "postgres"), required=True)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--user", default=None)
    r.add_argument("--dbname", default=None)
    r.add_argument("--clients", type=int, default=64)
    r.add_argument("--duration", type=float, default=60)
    r.add_argument("--preload", type=int, default=100_000)
    r.add_argument("--mix", default=DEFAULT_MIX, help=f"kind=weight,… (default {DEFAULT_MIX})")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--statement-timeout", type=float, default=60,
                   help="client-side seconds before a statement counts as an error")
    r.add_argument("--server-pid", type=int, help="sample this process's VmRSS")
    r.add_argument("--memory-limit", help="fail when the server's RSS reaches this (e.g. 2GiB)")
    r.add_argument("--pg-index", action="store_true", help="Postgres only: a B-tree index on t(id)")
    r.add_argument("--no-setup", action="store_true", help="use the table as it is")
    r.add_argument("--json", help="write the result here")
    rep = sub.add_parser("report")
    rep.add_argument("postgres_json")
    rep.add_argument("sluice_json")
    rep.add_argument("--out", help="also write the table here")
    args = ap.parse_args()

    if args.cmd == "report":
        with open(args.postgres_json) as f:
            pg = json.load(f)
        with open(args.sluice_json) as f:
            sl = json.load(f)
        sys.exit(report(pg, sl, args.out))

    if args.preload <= SCAN_WIDTH:
        raise SystemExit(f"--preload must exceed {SCAN_WIDTH}")
    args.user = args.user or args.engine
    args.dbname = args.dbname or args.engine
    result = asyncio.run(run(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print_errors(result)
    k = result["kinds"]
    print(f"[mixed] {args.engine}: {result['total_ok']:,} ok, {result['errors']} errors, "
          f"{result['qps']:,.1f} qps over {result['elapsed_s']:.1f} s ("
          + ", ".join(f"{kind} {k[kind]['ok']:,}" for kind in KINDS) + ")"
          + (f", peak RSS {mib(result['peak_rss'])} MiB" if result["peak_rss"] else ""),
          file=sys.stderr, flush=True)
    for f in result["failures"]:
        print(f"[mixed] {args.engine} FAILED: {f}", file=sys.stderr, flush=True)
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
