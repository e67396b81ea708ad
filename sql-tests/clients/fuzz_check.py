#!/usr/bin/env python3
"""Fuzzing the real `sluice` binary over the network: SQL through psycopg 3
and raw Postgres v3 protocol bytes through sockets.

The check starts its own `sluice serve` (a fresh data directory in a
temporary folder, its memory capped with RLIMIT_AS) and stops it at the end,
whatever happens. It then runs two deterministic rounds; every input is
generated from its own random generator, seeded by (--seed, round, index),
so `--seed S --only sql:I` (or `wire:I`, or a range `sql:I-J`) replays
exactly the input that a finding names.

1. SQL (--statements N). The corpus is every statement of the
   sql-tests/slt/**/*.slt files (the lines after `statement …` and
   `query …` up to a blank line or `----`), less those that reach outside
   the server (files, URLs, S3, models, the nats and filesystem
   connectors). Each input is a corpus statement, one mutated (tokens
   deleted, duplicated, swapped; two statements spliced; literals replaced
   by extremes: 0, -1, 2^63, NaN, '', long strings; a literal wrapped in
   ~1000 parentheses) or one from a small grammar (SELECT, INSERT, UPDATE,
   DELETE, CREATE TABLE, COPY, EXPLAIN, BEGIN/COMMIT/SAVEPOINT, SET, PREPARE,
   HNSW indexes, continuous queries, vector literals and casts, functions,
   deep nesting, huge literals, odd unicode, random NUL-free bytes in
   string literals, bound parameters). They run over psycopg 3 in
   autocommit (simple and extended protocol, text and binary results) and
   inside transactions, with statement_timeout = 2s and a client-side
   watchdog. Tables with ints, text and vector(3) are made first, along
   with the corpus's own tables, so that statements have rows to hit.
2. Wire (--messages N). Raw sockets: valid StartupMessages followed by
   sequences of valid, truncated, bit-flipped, wrong-length, oversize-length
   (0x7fffffff …) and unknown-type messages (Query, Parse, Bind, Describe,
   Execute, Close, Sync, Flush, CopyData, CopyDone, CopyFail, FunctionCall,
   Terminate), Bind with wrong parameter counts and formats, and malformed
   startup packets (bad protocol versions, missing NUL terminators, huge
   lengths, SSLRequest/GSSENCRequest, CancelRequests with forged keys).
   Replies are read with a deadline; the server closing a connection is fine.

After every 50 inputs and at the end the server must be healthy: its
process alive and a fresh connection answering SELECT 1 within 5 s (three
tries). Findings, each printed with the input that triggered it:
  crash           the server process exited (it is restarted and the round
                  goes on, so one run reports every finding);
  hang            the health check failed, or a statement overran its
                  statement_timeout by more than 10 s;
  panic           a "panicked at" line in the server's log (caught where it
                  happened: it cost a statement or a connection);
  internal error  an ErrorResponse without a SQLSTATE or with XX000.
Panics and internal errors are printed but fail the check only with
--strict. The last line is `fuzz: statements=N messages=M crashes=C hangs=H
internal_errors=I panics=P`; the exit status is non-zero when
crashes + hangs > 0 (with --strict, when any finding is).

The default sizes fit a CI run (about a minute on two cores). A long round:

  fuzz_check.py target/release/sluice 56100 --statements 100000 \\
      --messages 100000 --seed 7
  fuzz_check.py target/release/sluice 56100 --statements 10000000 \\
      --messages 10000000 --seconds 3600 --seed $RANDOM   # 30 min a round

Usage: fuzz_check.py SLUICE_BINARY PORT [--statements N] [--messages N]
       [--seed S] [--seconds T] [--strict] [--only sql:I[-J]|wire:I[-J]]
       [--memory-limit-mb M] [--keep]
"""

import argparse
import datetime
import decimal
import glob
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SLT_GLOB = os.path.join(ROOT, "sql-tests", "slt", "**", "*.slt")

STATEMENT_TIMEOUT_S = 2
HANG_GRACE_S = 10  # a statement running past statement_timeout + this is a hang
ABANDON_S = 20  # … and its connection is cut after this long
HEALTH_EVERY = 50
HEALTH_TIMEOUT_S = 5
# The --memory-limit the server runs with (queries beyond it fail with 53200).
SERVER_QUERY_MEMORY = "2GiB"
HEALTH_TRIES = 3

# ---------------------------------------------------------------- findings


class Findings:
    def __init__(self, seed):
        self.seed = seed
        self.items = []  # dicts: kind, where, input, detail, replay

    def add(self, kind, where, text, detail, replay=None):
        item = {"kind": kind, "where": where, "input": text, "detail": detail, "replay": replay}
        self.items.append(item)
        print(f"FINDING {kind} [{where}] {one_line(detail, 600)}", flush=True)
        print(f"  input: {shorten(text)}", flush=True)
        if replay:
            print(f"  replay: --seed {self.seed} --only {replay}", flush=True)

    def count(self, kind):
        return sum(1 for i in self.items if i["kind"] == kind)

    def report(self):
        """One block per distinct finding (kind and normalized detail), with
        the shortest input that produced it."""
        if not self.items:
            return
        groups = {}
        for item in self.items:
            groups.setdefault((item["kind"], signature(item["detail"])), []).append(item)
        print("--- findings (distinct; shortest input of each)")
        order = {"crash": 0, "hang": 1, "panic": 2, "internal error": 3}
        for (kind, _), items in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
            best = min(items, key=lambda i: len(i["input"]))
            print(f"{kind} x{len(items)}: {one_line(best['detail'], 1000)}")
            print(f"  shortest input [{best['where']}]: {shorten(best['input'], 1500)}")
            if best["replay"]:
                print(f"  replay: --seed {self.seed} --only {best['replay']}")


def signature(detail):
    d = re.sub(r"'[^']*'", "'…'", detail)
    d = re.sub(r"\d+", "N", d)
    return d[:200]


def one_line(text, limit):
    text = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + f"… [{len(text)} chars]"


def shorten(text, limit=600):
    r = repr(text)
    if len(r) <= limit:
        return r
    return r[: limit * 2 // 3] + f" …[{len(r)} chars in all]… " + r[-limit // 4:]


# ------------------------------------------------------------------ server


class Server:
    """The `sluice serve` under test: its own data directory, one log."""

    def __init__(self, binary, port, work, memory_limit_mb):
        self.binary, self.port, self.work = binary, port, work
        self.memory_limit = memory_limit_mb * 1024 * 1024
        self.log_path = os.path.join(work, "server.log")
        self.log = open(self.log_path, "ab")
        self.log_pos = 0
        self.recent = ""  # the log since the last start, at most 64 KiB
        self.generation = 0
        self.proc = None

    def data_dir(self):
        return os.path.join(self.work, f"data-{self.generation}")

    def _limit(self):
        """In the child before exec: the memory cap, and death with this
        process (no server is left behind even if the check is killed)."""
        if self.memory_limit > 0:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_limit, self.memory_limit))
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def start(self, fresh=False):
        if fresh:
            self.generation += 1
        # RUST_BACKTRACE=1 in the environment gives each caught panic its
        # backtrace in the kept log.
        env = dict(os.environ, RUST_BACKTRACE=os.environ.get("RUST_BACKTRACE", "0"))
        self.proc = subprocess.Popen(
            # Queries are bounded well inside the process cap, so a query
            # that wants more fails with 53200 instead of the allocator
            # aborting the server.
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir(),
             "--memory-limit", SERVER_QUERY_MEMORY],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=env, preexec_fn=self._limit,
        )
        self.new_log()
        self.recent = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(**conninfo(self.port), connect_timeout=2).close()
                return True
            except psycopg.Error:
                time.sleep(0.1)
        self.kill()
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self):
        return None if self.proc is None else self.proc.poll()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def new_log(self):
        """The log written since the last call."""
        self.log.flush()
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_pos)
                data = f.read()
        except OSError:
            return ""
        self.log_pos += len(data)
        text = data.decode("utf-8", "replace")
        self.recent = (self.recent + text)[-65536:]
        return text

    def tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 20000))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def conninfo(port):
    return {"host": "127.0.0.1", "port": port, "user": "sluice", "dbname": "sluice"}


def panics_in(log_text):
    """'panicked at FILE:LINE: message' for each panic in a piece of log."""
    lines = log_text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "panicked at" in line:
            message = lines[i + 1].strip() if i + 1 < len(lines) else ""
            found.append(f"{line.strip()} {message}".strip())
    return found


def cause_lines(log_text):
    """The lines of a log that are not the logger's own (a panic, a stack
    overflow, an allocation failure, an abort)."""
    lines = log_text.splitlines()
    keep = []
    for i, line in enumerate(lines):
        if re.search(r"panicked at|overflowed its stack|fatal runtime error|memory allocation of|"
                     r"out of memory|Segmentation|SIGSEGV|SIGABRT|Aborted", line):
            keep.append(line.strip())
            if "panicked at" in line and i + 1 < len(lines):
                keep.append(lines[i + 1].strip())
    return " | ".join(keep[-6:])


def health(server, tries=HEALTH_TRIES):
    """None if healthy, else why not."""
    if not server.alive():
        return f"the server process exited (status {server.exit_status()})"
    for _ in range(tries):
        result = {}

        def probe():
            try:
                with psycopg.connect(**conninfo(server.port), connect_timeout=HEALTH_TIMEOUT_S,
                                     autocommit=True) as conn:
                    result["v"] = conn.execute("SELECT 1").fetchone()[0]
            except Exception as e:  # noqa: BLE001 - any failure is unhealthy
                result["e"] = e

        t = threading.Thread(target=probe, daemon=True)
        t.start()
        t.join(HEALTH_TIMEOUT_S)
        if result.get("v") == 1:
            return None
        if not server.alive():
            return f"the server process exited (status {server.exit_status()})"
        time.sleep(0.5)
    return (f"a fresh connection's SELECT 1 did not answer within {HEALTH_TIMEOUT_S} s "
            f"({tries} {'try' if tries == 1 else 'tries'}; last: {result.get('e', 'no answer')})")


class Fuzzer:
    """Shared bookkeeping of both rounds: the server, findings, restarts."""

    def __init__(self, server, findings, on_fresh):
        self.server, self.findings, self.on_fresh = server, findings, on_fresh
        self.restarts = 0

    def restart(self):
        """After a crash or a hang: the same data directory, else a fresh one."""
        self.server.kill()
        self.restarts += 1
        if self.server.start():
            return
        self.findings.add("crash", "restart", "(restart on the same data directory)",
                          f"the server does not start again on its data directory "
                          f"{self.server.data_dir()}: {self.server.tail(8)}")
        self.server.kill()
        if not self.server.start(fresh=True):
            raise RuntimeError("sluice does not start on a fresh data directory either:\n" + self.server.tail())
        self.on_fresh()

    def after_input(self, where, text, replay, suspect=False):
        """Crash and panic checks after each input; restarts a dead server.
        With `suspect` (the connection dropped), gives a dying server time
        to exit, so that the crash is blamed on this input."""
        if suspect:
            deadline = time.monotonic() + 2
            while self.server.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        log = self.server.new_log()
        if self.server.alive():
            for panic in panics_in(log):
                self.findings.add("panic", where, text, panic, replay)
            return True
        self.crashed(where, text, replay, f"the server exited (status {self.server.exit_status()})", log)
        return False

    def crashed(self, where, text, replay, why, log=""):
        time.sleep(0.3)
        log += self.server.new_log()
        for panic in panics_in(log):
            self.findings.add("panic", where, text, panic, replay)
        cause = cause_lines(self.server.recent) or self.server.tail(6)
        self.findings.add("crash", where, text, f"{why}: {cause}", replay)
        self.restart()

    def check_health(self, where, text, replay, record=True, tries=HEALTH_TRIES):
        """Records a hang (or a crash) when the server is not healthy, and
        restarts it; True when it was healthy."""
        why = health(self.server, tries)
        if why is None:
            return True
        if self.server.alive():
            if record:
                self.findings.add("hang", where, text, why, replay)
            self.restart()
        else:
            self.crashed(where, text, replay, why)
        return False


# ------------------------------------------------------------------ corpus

SKIP = re.compile(
    r"read_image|read_bytes|read_audio|list_objects|object_ref|file://|s3://|https?://|\$\{|"
    r"CREATE\s+MODEL|\bEMBED\s*\(|ML_PREDICT|'nats'|'filesystem'|'kafka'|\bLOCATION\b|"
    r"COPY\b[^;]*\b(FROM|TO)\s+'|SUBSCRIBE|\bmodel\b|"
    # the fuzzer's own login must keep working
    r"\b(ALTER|DROP|REVOKE)\b[^;]*\bsluice\b",
    re.I | re.S,
)


def load_corpus():
    statements = []
    for path in sorted(glob.glob(SLT_GLOB, recursive=True)):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        i = 0
        while i < len(lines):
            head = lines[i].strip()
            if head.startswith("statement ") or head.startswith("query ") or head in ("statement", "query"):
                body = []
                i += 1
                while i < len(lines) and lines[i].strip() != "" and lines[i].strip() != "----":
                    body.append(lines[i])
                    i += 1
                sql = "\n".join(body).strip()
                if sql and not SKIP.search(sql):
                    statements.append(sql)
            i += 1
    return statements


# --------------------------------------------------------- SQL generation

INT_EXTREMES = ["0", "-1", "1", "2147483647", "2147483648", "-2147483648", "-2147483649",
                "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                "-9223372036854775809", "18446744073709551616", "340282366920938463463374607431768211456",
                "1e308", "1e309", "-1e-320", "0.0000000000000000000000000000000001", "-0.0",
                "99999999999999999999999999999999999999.99", "'NaN'::float8", "'Infinity'::float8",
                "'-Infinity'::float8", "NULL"]
VECTOR_LITERALS = ["'[1,2,3]'", "'[0,0,0]'", "'[-1.5,2e10,3e-10]'", "'[]'", "'[1,2]'", "'[1,2,3,4]'",
                   "'[NaN,1,2]'", "'[Infinity,-Infinity,0]'", "'[1e39,0,0]'", "'[,]'", "'[1,2,3'",
                   "'1,2,3'", "'[1;2;3]'", "'[ 1 , 2 , 3 ]'", "'[1,,3]'", "'[a,b,c]'", "'[1,2,3]x'",
                   "'[0x10,2,3]'", "''", "NULL"]
TYPES = ["BIGINT", "INT", "SMALLINT", "TEXT", "VARCHAR(3)", "BOOLEAN", "DOUBLE PRECISION", "REAL",
         "NUMERIC(10,2)", "NUMERIC(38,38)", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "BYTEA",
         "UUID", "JSON", "JSONB", "vector(3)", "vector(1)", "vector(0)", "vector(16000)", "vector(-1)",
         "vector(2147483648)", "vector", "EMBEDDING(2)", "BIGINT[]", "TEXT[]", "TENSOR", "IMAGE", "CHAR(1)",
         "nonexistent_type"]
CAST_TYPES = ["int", "bigint", "smallint", "text", "double precision", "real", "numeric", "numeric(5,2)",
              "boolean", "date", "timestamp", "timestamptz", "interval", "bytea", "uuid", "json", "jsonb",
              "vector(3)", "vector(2)", "vector(100000)", "vector", "varchar(1)", "char(2)", "bigint[]",
              "text[]", "regclass", "oid", "tensor", "embedding(3)"]
FUNCS = [("abs", 1), ("length", 1), ("upper", 1), ("lower", 1), ("substr", 3), ("substring", 2),
         ("coalesce", 2), ("nullif", 2), ("round", 2), ("sqrt", 1), ("ln", 1), ("log", 2), ("power", 2),
         ("concat", 3), ("repeat", 2), ("split_part", 3), ("regexp_replace", 3), ("regexp_match", 2),
         ("md5", 1), ("to_hex", 1), ("left", 2), ("right", 2), ("lpad", 3), ("rpad", 3), ("btrim", 1),
         ("reverse", 1), ("ascii", 1), ("chr", 1), ("strpos", 2), ("starts_with", 2), ("exp", 1), ("mod", 2),
         ("gcd", 2), ("factorial", 1), ("date_trunc", 2), ("to_timestamp", 1), ("vector_dims", 1),
         ("vector_norm", 1), ("l2_distance", 2), ("cosine_distance", 2), ("inner_product", 2),
         ("l1_distance", 2), ("subvector", 3), ("array_length", 2), ("cardinality", 1),
         ("array_append", 2), ("pg_typeof", 1), ("arrow_typeof", 1), ("current_setting", 1),
         ("encode", 2), ("decode", 2), ("to_char", 2), ("translate", 3), ("initcap", 1), ("octet_length", 1),
         ("tensor", 2), ("tensor_shape", 1), ("tensor_get", 2), ("tensor_reshape", 2), ("version", 0),
         ("now", 0), ("random", 0), ("uuid", 0), ("make_array", 3), ("array_to_string", 2),
         ("string_to_array", 2), ("json_get", 2), ("greatest", 3), ("least", 3), ("trunc", 2),
         ("sin", 1), ("atan2", 2), ("nanvl", 2), ("iszero", 1), ("digest", 2), ("overlay", 3)]
AGGS = ["count", "sum", "avg", "min", "max", "string_agg", "array_agg", "bool_and", "median", "stddev",
        "var_pop", "approx_distinct", "first_value", "bit_and"]
OPS = ["+", "-", "*", "/", "%", "||", "=", "<>", "<", ">=", "AND", "OR", "<->", "<#>", "<=>", "^", "&",
       "|", "#", "<<", ">>", "LIKE", "ILIKE", "~", "IS DISTINCT FROM", "@>", "->", "->>"]
SETTINGS = ["application_name", "extra_float_digits", "vector.ef_search", "streaming_parallelism",
            "datafusion.execution.batch_size", "datafusion.execution.target_partitions", "TIME ZONE",
            "DateStyle", "IntervalStyle", "search_path", "checkpoint_interval_ms", "statement_timeout",
            "default_transaction_isolation", "region_logs", "client_min_messages", "no_such_setting",
            "datafusion.optimizer.max_passes", "datafusion.sql_parser.recursion_limit"]
KEYWORDS = ["SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "OFFSET", "JOIN", "ON", "AND", "OR",
            "NOT", "NULL", "CASE", "WHEN", "THEN", "END", "AS", "UNION", "ALL", "DISTINCT", "INSERT", "INTO",
            "VALUES", "(", ")", ",", ";", "::", "'", "\"", "*", "[", "]", "$1", "?", "EXPLAIN", "WITH",
            "RECURSIVE", "LATERAL", "OVER", "PARTITION BY", "WINDOW", "RETURNING", "DEFAULT"]

TABLES = {
    "fz_int": [("id", "BIGINT"), ("n", "INT"), ("s", "TEXT"), ("f", "DOUBLE PRECISION"), ("b", "BOOLEAN")],
    "fz_text": [("id", "BIGINT"), ("t", "TEXT"), ("j", "TEXT")],
    "fz_vec": [("id", "BIGINT"), ("v", "vector(3)"), ("w", "DOUBLE PRECISION")],
}


def odd_unicode(rng, n):
    ranges = [(0x20, 0x7e), (0xa0, 0x2ff), (0x300, 0x36f), (0x590, 0x6ff), (0x200b, 0x200f),
              (0x202a, 0x202e), (0xfeff, 0xfeff), (0xfff0, 0xffff), (0x1f300, 0x1f64f), (0x10fff0, 0x10ffff),
              (0xe000, 0xe0ff), (0x4e00, 0x4e40), (0x1, 0x1f)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def random_bytes_text(rng, n):
    """NUL-free random bytes, each read as one code point (latin-1)."""
    return "".join(chr(rng.randint(1, 255)) for _ in range(n))


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def string_literal(rng):
    r = rng.random()
    if r < 0.35:
        return quote(rng.choice(["", "x", "apple", "home", "NaN", "-1", "9223372036854775808", "[1,2,3]",
                                 "{}", "null", "true", "2024-01-01", "1 day", "\\", "%", "_", "'", "\"",
                                 "\\N", "\t", "\n", "a b c", "ß", "İ"]))
    if r < 0.55:
        return quote(odd_unicode(rng, rng.randint(1, 40)))
    if r < 0.75:
        return quote(random_bytes_text(rng, rng.randint(1, 60)))
    if r < 0.85:
        return "E" + quote(rng.choice(["\\x00", "\\000", "\\xff", "\\u0000", "\\uD800", "\\U0010FFFF",
                                       "\\U00110000", "\\", "\\x", "\\777", "abc\\"]))
    if r < 0.95:
        return quote("x" * rng.choice([256, 4096, 65536, 1_000_000]))
    return "$$" + odd_unicode(rng, 10).replace("$", "") + "$$"


def literal(rng):
    r = rng.random()
    if r < 0.3:
        return str(rng.randint(-100, 100))
    if r < 0.45:
        return rng.choice(INT_EXTREMES)
    if r < 0.55:
        return repr(rng.uniform(-1e6, 1e6))
    if r < 0.75:
        return string_literal(rng)
    if r < 0.85:
        return rng.choice(VECTOR_LITERALS) + rng.choice(["::vector(3)", "::vector", "", "::vector(2)"])
    if r < 0.9:
        return rng.choice(["NULL", "TRUE", "FALSE", "DATE '2024-02-30'", "TIMESTAMP '294277-01-01 00:00:00'",
                           "INTERVAL '1000000000 years'", "'-infinity'::timestamp", "'\\x00ff'::bytea",
                           "'00000000-0000-0000-0000-000000000000'::uuid", "'{\"a\":[1,2]}'::json"])
    return "ARRAY[" + ", ".join(str(rng.randint(-9, 9)) for _ in range(rng.randint(0, 5))) + "]"


def column(rng, table):
    if table is None or rng.random() < 0.05:
        return rng.choice(["id", "nope", "v", "s", "\"ID\"", "fz_int.id", "x.y.z.w"])
    return rng.choice(TABLES[table])[0]


def expr(rng, table, depth):
    if depth <= 0 or rng.random() < 0.3:
        return literal(rng) if table is None or rng.random() < 0.5 else column(rng, table)
    r = rng.random()
    sub = lambda: expr(rng, table, depth - 1)  # noqa: E731
    if r < 0.25:
        return f"({sub()} {rng.choice(OPS)} {sub()})"
    if r < 0.45:
        name, arity = rng.choice(FUNCS)
        arity = max(0, arity + rng.choice([0, 0, 0, 0, -1, 1]))
        return f"{name}({', '.join(sub() for _ in range(arity))})"
    if r < 0.55:
        return f"CAST({sub()} AS {rng.choice(CAST_TYPES)})" if rng.random() < 0.3 else \
            f"({sub()})::{rng.choice(CAST_TYPES)}"
    if r < 0.62:
        return f"CASE WHEN {sub()} THEN {sub()} ELSE {sub()} END"
    if r < 0.68:
        return f"{rng.choice(['-', 'NOT ', '+', '~', '@'])}{sub()}"
    if r < 0.74:
        return f"{sub()} IN ({', '.join(sub() for _ in range(rng.randint(1, 4)))})"
    if r < 0.78:
        return f"{sub()} BETWEEN {sub()} AND {sub()}"
    if r < 0.82:
        return f"{sub()} IS {rng.choice(['NULL', 'NOT NULL', 'TRUE', 'FALSE', 'UNKNOWN'])}"
    if r < 0.86:
        t = rng.choice(list(TABLES))
        return f"(SELECT {rng.choice(AGGS)}({column(rng, t)}) FROM {t})"
    if r < 0.9:
        t = rng.choice(list(TABLES))
        return f"EXISTS (SELECT 1 FROM {t} WHERE {expr(rng, t, depth - 1)})"
    if r < 0.94:
        return f"{rng.choice(AGGS)}({rng.choice(['', 'DISTINCT '])}{sub()})"
    if r < 0.97:
        return f"{rng.choice(['row_number', 'rank', 'sum', 'lag', 'count'])}({sub() if rng.random() < .5 else ''}) " \
               f"OVER (PARTITION BY {sub()} ORDER BY {sub()})"
    return f"{sub()}[{sub()}]"


def gen_select(rng, depth=3):
    t = rng.choice(list(TABLES))
    cols = ", ".join(expr(rng, t, rng.randint(0, depth)) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.1:
        cols = "*"
    s = f"SELECT {rng.choice(['', '', 'DISTINCT '])}{cols} FROM {t}"
    if rng.random() < 0.2:
        u = rng.choice(list(TABLES))
        s += f" {rng.choice(['JOIN', 'LEFT JOIN', 'FULL JOIN', 'CROSS JOIN', 'RIGHT JOIN'])} {u} u"
        if "CROSS" not in s:
            s += f" ON {t}.id = u.id" if rng.random() < 0.7 else f" ON {expr(rng, t, 2)}"
    if rng.random() < 0.5:
        s += f" WHERE {expr(rng, t, depth)}"
    if rng.random() < 0.2:
        s += f" GROUP BY {column(rng, t)}"
        if rng.random() < 0.3:
            s += f" HAVING {expr(rng, t, 2)}"
    if t == "fz_vec" and rng.random() < 0.4:
        s += f" ORDER BY v {rng.choice(['<->', '<#>', '<=>'])} {rng.choice(VECTOR_LITERALS)} " \
             f"LIMIT {rng.choice(['1', '5', '0', '-1', '9223372036854775807', 'ALL', 'NULL'])}"
    elif rng.random() < 0.3:
        s += f" ORDER BY {expr(rng, t, 2)} {rng.choice(['', 'DESC', 'ASC NULLS FIRST'])}"
    if rng.random() < 0.3:
        s += f" LIMIT {rng.choice(INT_EXTREMES[:12] + ['10', '1'])}"
    if rng.random() < 0.1:
        s += f" OFFSET {rng.choice(INT_EXTREMES[:12])}"
    return s


def gen_values_row(rng, table):
    vals = []
    for _, ty in TABLES[table]:
        if rng.random() < 0.15:
            vals.append(literal(rng))
        elif ty == "BIGINT" or ty == "INT":
            vals.append(str(rng.randint(-1000, 100000)))
        elif ty == "TEXT":
            vals.append(string_literal(rng) if rng.random() < 0.3 else quote(f"t{rng.randint(0, 99)}"))
        elif ty == "DOUBLE PRECISION":
            vals.append(repr(rng.uniform(-100, 100)))
        elif ty == "BOOLEAN":
            vals.append(rng.choice(["true", "false", "NULL"]))
        else:
            vals.append(quote("[" + ",".join(repr(round(rng.uniform(-5, 5), 3)) for _ in range(3)) + "]"))
    return "(" + ", ".join(vals) + ")"


def gen_insert(rng):
    t = rng.choice(list(TABLES))
    r = rng.random()
    if r < 0.6:
        rows = ", ".join(gen_values_row(rng, t) for _ in range(rng.randint(1, 5)))
        return f"INSERT INTO {t} VALUES {rows}"
    if r < 0.8:
        return f"INSERT INTO {t} SELECT * FROM {t} WHERE {expr(rng, t, 2)} LIMIT 20"
    cols = [c for c, _ in TABLES[t]]
    chosen = rng.sample(cols, rng.randint(1, len(cols)))
    return f"INSERT INTO {t} ({', '.join(chosen)}) VALUES ({', '.join(literal(rng) for _ in chosen)})" + \
        rng.choice(["", "", " RETURNING *", " ON CONFLICT DO NOTHING"])


def gen_copy(rng):
    """(statement, data or None)."""
    t = rng.choice(list(TABLES))
    if rng.random() < 0.35:
        src = t if rng.random() < 0.5 else f"({gen_select(rng, 2)})"
        fmt = rng.choice(["", " (FORMAT csv)", " (FORMAT csv, HEADER true)", " (FORMAT binary)",
                          " WITH (FORMAT text, NULL 'x')", " (FORMAT json)", " (DELIMITER '|')"])
        return f"COPY {src} TO STDOUT{fmt}", None
    fmt = rng.choice(["text", "csv", "binary", "text"])
    opts = {"text": ["", " (FORMAT text)", " (FORMAT text, NULL 'NULL')", " (DELIMITER ',')"],
            "csv": [" (FORMAT csv)", " (FORMAT csv, HEADER true)", " WITH (FORMAT csv, QUOTE '''')",
                    " (FORMAT csv, DELIMITER ';', ESCAPE '\\')"],
            "binary": [" (FORMAT binary)"]}[fmt]
    stmt = f"COPY {t} FROM STDIN{rng.choice(opts)}"
    ncols = len(TABLES[t])
    if fmt == "binary":
        data = bytearray(b"PGCOPY\n\xff\r\n\0" if rng.random() < 0.8 else rng.randbytes(11))
        data += struct.pack("!ii", rng.choice([0, 0, 1 << 16, -1]), 0)
        for _ in range(rng.randint(0, 4)):
            n = rng.choice([ncols, ncols, ncols - 1, ncols + 1, 0, -1, 32767])
            data += struct.pack("!h", n)
            for _ in range(max(0, min(n, 8))):
                ln = rng.choice([8, 4, -1, 0, 3, 100, -5, 0x7fffffff])
                data += struct.pack("!i", ln) + rng.randbytes(max(0, min(ln, 64)))
        if rng.random() < 0.8:
            data += struct.pack("!h", -1)
        return stmt, bytes(data)
    sep = "," if "csv" in stmt or "','" in stmt else ("\t" if "';'" not in stmt else ";")
    lines = []
    for _ in range(rng.randint(0, 6)):
        fields = []
        cols = TABLES[t][: rng.choice([ncols, ncols, ncols, ncols - 1])]
        if rng.random() < 0.1:
            cols = cols + [("extra", "TEXT")]
        for c, ty in cols:
            r = rng.random()
            if r < 0.6:
                fields.append({"BIGINT": str(rng.randint(-5, 5000)), "INT": str(rng.randint(-5, 500)),
                               "TEXT": f"c{rng.randint(0, 9)}", "DOUBLE PRECISION": "1.5",
                               "BOOLEAN": "t", "vector(3)": "\"[1,2,3]\"" if sep == "," else "[1,2,3]"}.get(ty, "x"))
            elif r < 0.7:
                fields.append("\\N")
            elif r < 0.8:
                fields.append(rng.choice(["9223372036854775808", "NaN", "", "\"unterminated", "\\", "[1,2]",
                                          "x" * 10000, "\"\"\"", "-", "1e400"]))
            else:
                fields.append(random_bytes_text(rng, rng.randint(1, 20)).replace("\n", " ").replace("\r", " "))
        lines.append(sep.join(fields))
    if rng.random() < 0.1:
        lines.append("\\.")
    data = "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")
    return stmt, data.encode("utf-8", "surrogatepass") if rng.random() < 0.95 else rng.randbytes(50).replace(b"\0", b"1")


def gen_deep(rng):
    k = rng.randint(0, 11)
    if k == 0:
        n = rng.choice([100, 500, 1000, 1000])
        return "SELECT " + "(" * n + "1" + ")" * n
    if k == 1:
        n = rng.choice([200, 1000])
        return "SELECT " + "abs(" * n + "-1" + ")" * n
    if k == 2:
        n = rng.choice([50, 200])
        return "SELECT " + "(SELECT " * n + "1" + ")" * n
    if k == 3:
        n = rng.choice([1000, 5000, 20000])
        return "SELECT " + " + ".join(["1"] * n)
    if k == 4:
        n = rng.choice([1000, 5000])
        return "SELECT count(*) FROM fz_int WHERE " + " AND ".join(["id > 0"] * n)
    if k == 5:
        n = rng.choice([100, 500])
        return "SELECT " + "CASE WHEN true THEN " * n + "1" + " END" * n
    if k == 6:
        n = rng.choice([100, 1000])
        return "SELECT " + "ARRAY[" * n + "1" + "]" * n
    if k == 7:
        n = rng.choice([1000, 10000])
        return "SELECT count(*) FROM fz_int WHERE id IN (" + ", ".join(str(i) for i in range(n)) + ")"
    if k == 8:
        n = rng.choice([100, 500])
        return " UNION ALL ".join(f"SELECT {i} AS x" for i in range(n))
    if k == 9:
        n = rng.choice([500, 2000])
        return "SELECT " + "NOT " * n + "true"
    if k == 10:
        n = rng.choice([200, 1000])
        return "SELECT " + "-(" * n + "1" + ")" * n
    n = rng.choice([100, 400])
    return "WITH " + ", ".join(f"c{i} AS (SELECT {'1' if i == 0 else f'x + 1'} AS x" +
                               ("" if i == 0 else f" FROM c{i - 1}") + ")" for i in range(n)) + f" SELECT x FROM c{n - 1}"


def gen_huge(rng):
    k = rng.randint(0, 8)
    if k == 0:
        return f"SELECT length({quote('x' * rng.choice([100_000, 1_000_000, 4_000_000]))})"
    if k == 1:
        return f"INSERT INTO fz_text VALUES (-1, {quote(odd_unicode(rng, 50_000))}, NULL)"
    if k == 2:
        n = rng.choice([1000, 16000, 16001, 100_000])
        return f"SELECT vector_dims('[{','.join(['0.5'] * n)}]'::vector)"
    if k == 3:
        return "SELECT " + "9" * rng.choice([100, 10000, 100_000])
    if k == 4:
        return "SELECT 1 AS " + "a" * rng.choice([64, 1000, 100_000])
    if k == 5:
        return "INSERT INTO fz_int (id, n) VALUES " + ", ".join(f"({i}, {i})" for i in range(rng.choice([1000, 10000])))
    if k == 6:
        return f"SELECT repeat('ab', {rng.choice(['1000000', '100000000', '2147483647', '9223372036854775807', '-1'])})"
    if k == 7:
        return f"SELECT count(*) FROM generate_series(1, {rng.choice(['1000000', '9223372036854775807', '-1'])})"
    return f"SELECT {quote(random_bytes_text(rng, 100_000))} = {quote(odd_unicode(rng, 10))}"


def gen_ddl(rng):
    k = rng.randint(0, 9)
    name = f"fz_tmp{rng.randint(0, 4)}"
    if k <= 2:
        cols = ", ".join(f"c{i} {rng.choice(TYPES)}" + rng.choice(["", "", " NOT NULL", " PRIMARY KEY",
                                                                   f" DEFAULT {literal(rng)}"])
                         for i in range(rng.randint(1, 5)))
        return f"CREATE TABLE {rng.choice(['', 'IF NOT EXISTS '])}{name} ({cols})"
    if k == 3:
        return f"CREATE TABLE {name} AS {gen_select(rng, 2)}"
    if k == 4:
        return f"DROP TABLE {rng.choice(['IF EXISTS ', ''])}{name}{rng.choice(['', ' CASCADE'])}"
    if k == 5:
        return f"INSERT INTO {name} VALUES ({', '.join(literal(rng) for _ in range(rng.randint(1, 4)))})"
    if k == 6:
        return (f"CREATE INDEX {rng.choice(['', 'IF NOT EXISTS '])}fz_idx{rng.randint(0, 2)} ON fz_vec USING "
                f"{rng.choice(['hnsw', 'hnsw', 'ivfflat', 'btree'])} (v{rng.choice(['', ' vector_l2_ops', ' vector_cosine_ops', ' vector_ip_ops', ' text_ops'])})"
                + rng.choice(["", f" WITH (m = {rng.choice(['2', '4', '16', '0', '100', '2147483648'])}, "
                                  f"ef_construction = {rng.choice(['4', '64', '0', '-1', '100000'])})",
                              f" WITH (metric = {quote(rng.choice(['l2', 'cosine', 'ip', 'hamming', '']))})"]))
    if k == 7:
        return f"DROP INDEX {rng.choice(['IF EXISTS ', ''])}fz_idx{rng.randint(0, 2)}"
    if k == 8:
        return rng.choice([f"CREATE VIEW fz_view{rng.randint(0, 2)} AS {gen_select(rng, 2)}",
                           f"DROP VIEW IF EXISTS fz_view{rng.randint(0, 2)}",
                           f"CREATE SCHEMA IF NOT EXISTS {quote(odd_unicode(rng, 5)).replace(chr(39), chr(34))}",
                           f"TRUNCATE {name}", f"ALTER TABLE {name} ADD COLUMN z INT",
                           f"ALTER TABLE {name} RENAME TO {name}_r"])
    return rng.choice([
        f"CREATE MATERIALIZED VIEW fz_mv{rng.randint(0, 2)} AS SELECT n, count(*) AS c FROM fz_int GROUP BY n",
        f"CREATE MATERIALIZED VIEW fz_mv{rng.randint(0, 2)} AS {gen_select(rng, 1)}",
        f"DROP MATERIALIZED VIEW IF EXISTS fz_mv{rng.randint(0, 2)}",
        "FLUSH", "CHECKPOINT", "SHOW MATERIALIZED VIEWS",
        f"CREATE TABLE fz_gen{rng.randint(0, 2)} (id BIGINT, s TEXT) WITH ('connector' = 'datagen', "
        f"'number-of-rows' = {quote(rng.choice(['10', '0', '-1', '100', 'x', '18446744073709551616']))})",
        f"SELECT count(*) FROM fz_gen{rng.randint(0, 2)}",
        f"DROP TABLE IF EXISTS fz_gen{rng.randint(0, 2)}",
    ])


def gen_tx(rng):
    return rng.choice(["BEGIN", "BEGIN", "COMMIT", "COMMIT", "ROLLBACK", "END", "ABORT", "START TRANSACTION READ ONLY",
                       "BEGIN ISOLATION LEVEL SERIALIZABLE", f"SAVEPOINT s{rng.randint(0, 2)}",
                       f"ROLLBACK TO SAVEPOINT s{rng.randint(0, 2)}", f"RELEASE SAVEPOINT s{rng.randint(0, 2)}",
                       "COMMIT AND CHAIN", "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "ROLLBACK PREPARED 'x'",
                       "PREPARE TRANSACTION 'x'", "LOCK TABLE fz_int"])


def gen_session(rng):
    k = rng.randint(0, 5)
    name = rng.choice(SETTINGS)
    if k <= 1:
        sep = " " if name == "TIME ZONE" else rng.choice([" = ", " TO "])
        return f"SET {rng.choice(['', 'LOCAL ', 'SESSION '])}{name}{sep}{rng.choice(INT_EXTREMES[:8] + [string_literal(rng), 'DEFAULT', '0', 'on'])}"
    if k == 2:
        return f"SHOW {rng.choice([name, 'ALL', 'nope'])}"
    if k == 3:
        return f"RESET {rng.choice([name, 'ALL'])}"
    if k == 4:
        return f"SELECT set_config({quote(name)}, {string_literal(rng)}, {rng.choice(['true', 'false'])})"
    return rng.choice(["DISCARD ALL", "DEALLOCATE ALL", f"PREPARE fzp{rng.randint(0, 2)} AS {gen_select(rng, 1)}",
                       f"PREPARE fzp{rng.randint(0, 2)} (bigint, text) AS SELECT $1 + 1, $2 || 'x', $3",
                       f"EXECUTE fzp{rng.randint(0, 2)}({', '.join(literal(rng) for _ in range(rng.randint(0, 3)))})",
                       f"DEALLOCATE fzp{rng.randint(0, 2)}", "LISTEN chan", "NOTIFY chan, 'x'", "VACUUM", "ANALYZE fz_int"])


def gen_params(rng):
    """(statement with %s placeholders, parameters)."""
    values = [0, -1, 1, 2 ** 31, 2 ** 63 - 1, 2 ** 63, -2 ** 63, 2 ** 64, 1.5, float("nan"), float("inf"), -0.0,
              decimal.Decimal("1e1000"), decimal.Decimal("NaN"), "", "x" * 100_000, "NaN", "[1,2,3]", "[1,2]",
              b"\x00\xff\x00", b"", None, True, False, [1, 2, 3], ["a", None], [[1, 2], [3, 4]], [],
              datetime.date.min, datetime.datetime.max, datetime.timedelta(days=999999999), uuid.UUID(int=0),
              Jsonb({"a": [1, {"b": None}]})]
    pick = lambda: odd_unicode(rng, 20) if rng.random() < 0.1 else rng.choice(values)  # noqa: E731
    templates = [("SELECT %s", 1), ("SELECT %s::int8 + 1", 1), ("SELECT %s::text || 'x'", 1),
                 ("INSERT INTO fz_int (id, n, s) VALUES (%s, %s, %s)", 3), ("SELECT * FROM fz_int WHERE id = %s", 1),
                 ("SELECT %s::vector(3) <-> '[1,2,3]'", 1), ("SELECT length(%s)", 1),
                 ("UPDATE fz_text SET t = %s WHERE id = %s", 2), ("SELECT %s, %s, %s", 3),
                 ("INSERT INTO fz_vec VALUES (%s, %s, %s)", 3), ("SELECT * FROM fz_vec ORDER BY v <-> %s LIMIT %s", 2),
                 ("SELECT %s = ANY(%s)", 2), ("SELECT * FROM fz_int LIMIT %s OFFSET %s", 2),
                 ("SELECT %s::numeric * 2", 1), ("SELECT %s::bytea", 1), ("SELECT %s::json", 1)]
    q, n = rng.choice(templates)
    return q, [pick() for _ in range(n)]


def generate(rng):
    """(statement, COPY data or None, parameters or None)."""
    r = rng.random()
    if r < 0.28:
        return gen_select(rng), None, None
    if r < 0.38:
        return gen_insert(rng), None, None
    if r < 0.43:
        t = rng.choice(list(TABLES))
        c = rng.choice(TABLES[t][1:])[0]
        return f"UPDATE {t} SET {c} = {expr(rng, t, 2)} WHERE {expr(rng, t, 2)}", None, None
    if r < 0.47:
        t = rng.choice(list(TABLES))
        return f"DELETE FROM {t} WHERE {expr(rng, t, 2)}", None, None
    if r < 0.55:
        return gen_ddl(rng), None, None
    if r < 0.62:
        stmt, data = gen_copy(rng)
        return stmt, data, None
    if r < 0.66:
        inner = gen_select(rng, 2) if rng.random() < 0.7 else gen_insert(rng)
        return f"EXPLAIN {rng.choice(['', 'ANALYZE ', 'VERBOSE ', 'ANALYZE VERBOSE ', '(FORMAT json) '])}{inner}", None, None
    if r < 0.72:
        return gen_tx(rng), None, None
    if r < 0.77:
        return gen_session(rng), None, None
    if r < 0.83:
        return gen_deep(rng), None, None
    if r < 0.88:
        return gen_huge(rng), None, None
    if r < 0.95:
        q, params = gen_params(rng)
        return q, None, params
    return f"SELECT {expr(rng, None, 5)}", None, None


# -------------------------------------------------------------- mutation

TOKEN_RE = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|[A-Za-z_][A-Za-z0-9_$]*"
    r"|::|<->|<#>|<=>|<=|>=|<>|!=|\|\||\s+|.",
    re.S,
)


def tokens(sql):
    return TOKEN_RE.findall(sql)


def mutate(rng, sql, corpus):
    toks = tokens(sql)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        idx = [i for i, t in enumerate(toks) if not t.isspace()]
        if not idx:
            break
        k = rng.randint(0, 9)
        i = rng.choice(idx)
        if k == 0:
            del toks[i]
        elif k == 1:
            toks.insert(i, toks[i] + " ")
        elif k == 2:
            j = rng.choice(idx)
            toks[i], toks[j] = toks[j], toks[i]
        elif k == 3:
            other = tokens(rng.choice(corpus))
            cut_a, cut_b = rng.randint(0, len(toks)), rng.randint(0, len(other))
            joiner = rng.choice([" ", " ", "; ", " UNION ALL ", ", "])
            toks = toks[:cut_a] + [joiner] + other[cut_b:]
        elif k in (4, 5, 6):
            lits = [j for j in idx if toks[j][0].isdigit() or toks[j][0] == "'"] or idx
            j = rng.choice(lits)
            toks[j] = rng.choice(INT_EXTREMES) if k != 6 else string_literal(rng)
        elif k == 7:
            lits = [j for j in idx if toks[j][0].isdigit() or toks[j][0] == "'"] or idx
            j = rng.choice(lits)
            n = rng.choice([50, 200, 1000])
            toks[j] = "(" * n + toks[j] + ")" * n
        elif k == 8:
            toks.insert(i, " " + rng.choice(KEYWORDS) + " ")
        else:
            toks = toks[: rng.randint(1, len(toks))]
    return "".join(toks)


# ------------------------------------------------------------- SQL round


def bounded(fn, seconds=60):
    """Runs fn in a thread for at most `seconds` (a hung server must not
    hang the check); its exceptions are swallowed."""
    def run():
        try:
            fn()
        except Exception:  # noqa: BLE001 - best effort
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)


def setup_tables(port, corpus):
    """Tables with rows for statements to hit: the fuzz tables and the
    corpus's own (its CREATE TABLE and INSERT statements)."""
    with psycopg.connect(**conninfo(port), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET statement_timeout = '10s'")
        for name, cols in TABLES.items():
            conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{c} {t}' for c, t in cols)})")
        conn.execute("INSERT INTO fz_int VALUES " + ", ".join(
            f"({i}, {i % 7 - 3}, 's{i % 13}', {i * 0.25}, {'true' if i % 2 else 'false'})" for i in range(200)))
        texts = ["apple", "pear", "", "ß", "x" * 40, '{"a":1}']
        conn.execute("INSERT INTO fz_text VALUES " + ", ".join(
            f"({i}, {quote(texts[i % 6])}, NULL)" for i in range(100)))
        conn.execute("INSERT INTO fz_vec VALUES " + ", ".join(
            f"({i}, '[{i % 5},{(i * 7) % 11 - 5},{i / 10}]', {i})" for i in range(200)))
        for sql in corpus:
            head = sql.lstrip().upper()
            if (head.startswith("CREATE TABLE") and "CONNECTOR" not in head) or \
                    (head.startswith("INSERT INTO") and len(sql) < 5000):
                try:
                    conn.execute(sql)
                except psycopg.Error:
                    pass


class Watchdog(threading.Thread):
    """Cancels a statement that overruns statement_timeout by HANG_GRACE_S
    and cuts its connection after ABANDON_S."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.current = None  # [conn, start, stage]
        self.stop_flag = False
        self.start()

    def arm(self, conn):
        with self.lock:
            self.current = [conn, time.monotonic(), 0]

    def disarm(self):
        with self.lock:
            cur, self.current = self.current, None
        return cur[2] if cur else 0

    def run(self):
        while not self.stop_flag:
            time.sleep(0.2)
            action = None
            with self.lock:
                if self.current is not None:
                    conn, start, stage = self.current
                    elapsed = time.monotonic() - start
                    if stage == 0 and elapsed > STATEMENT_TIMEOUT_S + HANG_GRACE_S:
                        self.current[2] = 1
                        action = ("cancel", conn)
                    elif stage == 1 and elapsed > ABANDON_S:
                        self.current[2] = 2
                        action = ("cut", conn)
            if action is None:
                continue
            kind, conn = action
            try:
                if kind == "cancel":
                    if hasattr(conn, "cancel_safe"):
                        conn.cancel_safe(timeout=5)
                    else:
                        conn.cancel()
                else:
                    s = socket.socket(fileno=os.dup(conn.fileno()))
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    finally:
                        s.close()
            except Exception:  # noqa: BLE001 - best effort
                pass


RESETS_TIMEOUT = re.compile(r"\b(SET|RESET|DISCARD|set_config)\b", re.I)


class SqlRound:
    def __init__(self, fuzzer, seed, corpus):
        self.fuzzer, self.seed, self.corpus = fuzzer, seed, corpus
        self.port = fuzzer.server.port
        self.watchdog = Watchdog()
        self.auto = None
        self.tx = None
        self.stats = {"ok": 0, "error": 0, "timeout": 0, "client_error": 0, "disconnect": 0}
        self.prev = ("sql start", "(set-up)", None)

    # connections -----------------------------------------------------
    def connect(self, autocommit):
        conn = psycopg.connect(**conninfo(self.port), autocommit=autocommit, connect_timeout=10)
        self.watchdog.arm(conn)
        try:
            conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
            if not autocommit:
                conn.commit()
        except psycopg.Error:
            conn.close()
            raise
        finally:
            self.watchdog.disarm()
        return conn

    def close_all(self):
        for conn in (self.auto, self.tx):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
        self.auto = self.tx = None

    def conn_for(self, autocommit):
        attr = "auto" if autocommit else "tx"
        conn = getattr(self, attr)
        if conn is None or conn.closed or conn.info.transaction_status in (
                psycopg.pq.TransactionStatus.ACTIVE, psycopg.pq.TransactionStatus.UNKNOWN):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
            conn = self.connect(autocommit)
            setattr(self, attr, conn)
        return conn

    def cleanup_streams(self):
        """Drops the running continuous queries the round has made, so the
        server's background work stays small."""
        try:
            with psycopg.connect(**conninfo(self.port), autocommit=True, connect_timeout=10) as conn:
                conn.execute("SET statement_timeout = '10s'")
                for name, kind in conn.execute(
                        "SELECT name, kind FROM sluice_catalog.continuous_queries").fetchall():
                    what = "SINK" if kind == "sink" else "MATERIALIZED VIEW"
                    try:
                        conn.execute(f'DROP {what} IF EXISTS "{name}"')
                    except psycopg.Error:
                        pass
        except psycopg.Error:
            pass

    # one input -------------------------------------------------------
    def make_input(self, i):
        rng = __import__("random").Random(f"{self.seed}/sql/{i}")
        r = rng.random()
        data = params = None
        if r < 0.15:
            sql = rng.choice(self.corpus)
        elif r < 0.6:
            sql = mutate(rng, rng.choice(self.corpus), self.corpus)
        else:
            sql, data, params = generate(rng)
        if SKIP.search(sql):
            sql = "SELECT 1 /* skipped: reaches outside the server */"
            data = params = None
        mode = rng.choice(["simple", "extended", "extended", "tx", "tx-simple"])
        binary = rng.random() < 0.25
        ending = rng.choice(["keep", "keep", "commit", "rollback"])
        if isinstance(data, str):
            data = data.encode()
        return sql, data, params, mode, binary, ending

    def run_one(self, i):
        sql, data, params, mode, binary, ending = self.make_input(i)
        where = f"sql #{i} ({mode}{', binary' if binary else ''}{', params' if params is not None else ''})"
        shown = sql if params is None else f"{sql}  -- params: {params!r}"
        if data is not None:
            shown += f"  -- COPY data: {data!r}"
        replay = f"sql:{i}"
        autocommit = not mode.startswith("tx")
        try:
            conn = self.conn_for(autocommit)
        except psycopg.Error as e:
            # The server may have been left unable to serve by the input
            # before: that input is the one to blame.
            self.close_all()
            prev_where, prev_shown, prev_replay = self.prev
            if self.fuzzer.check_health(f"{prev_where}, then no new connection ({one_line(e, 200)})",
                                        prev_shown, prev_replay):
                try:
                    conn = self.conn_for(autocommit)
                except psycopg.Error:
                    self.stats["disconnect"] += 1
                    return
            else:
                return
        self.prev = (where, shown, replay)
        simple = mode in ("simple", "tx-simple")
        cur = psycopg.ClientCursor(conn) if simple else conn.cursor()
        start = time.monotonic()
        self.watchdog.arm(conn)
        server_error = None
        dropped = False
        try:
            if re.match(r"\s*COPY\b", sql, re.I) and re.search(r"\bSTD(IN|OUT)\b", sql, re.I):
                with cur.copy(sql) as copy:
                    if re.search(r"\bSTDIN\b", sql, re.I):
                        if data:
                            copy.write(data)
                    else:
                        for _ in copy:
                            pass
            elif params is not None:
                cur.execute(sql, params, binary=binary and not simple)
            else:
                cur.execute(sql, binary=binary and not simple)
                while cur.nextset():
                    pass
            self.stats["ok"] += 1
        except psycopg.Error as e:
            if e.pgresult is not None or e.sqlstate:
                server_error = e
            elif isinstance(e, psycopg.OperationalError):
                self.stats["disconnect"] += 1
                dropped = True
            else:
                self.stats["client_error"] += 1
        except (ValueError, TypeError, UnicodeError, OverflowError):
            self.stats["client_error"] += 1
        finally:
            stage = self.watchdog.disarm()
        elapsed = time.monotonic() - start
        if server_error is not None:
            st = server_error.sqlstate
            if st == "57014":
                self.stats["timeout"] += 1
            else:
                self.stats["error"] += 1
            if not st:
                self.fuzzer.findings.add("internal error", where, shown,
                                         f"ErrorResponse without SQLSTATE: {server_error}", replay)
            elif st == "XX000":
                self.fuzzer.findings.add("internal error", where, shown, f"XX000: {server_error}", replay)
        if stage > 0:
            detail = (f"the statement ran {elapsed:.1f} s with statement_timeout = {STATEMENT_TIMEOUT_S}s "
                      f"(cancelled by the client{', then its connection cut' if stage > 1 else ''})")
            if stage > 1:
                # Whatever the statement left running would slow the rest
                # of the round: the server is restarted either way.
                self.close_all()
                if self.fuzzer.check_health(where, shown, replay, record=False, tries=1):
                    self.fuzzer.restart()
                else:
                    detail += "; the server then did not answer a fresh connection's SELECT 1"
            self.fuzzer.findings.add("hang", where, shown, detail, replay)
            if stage > 1:
                return
        if not self.fuzzer.after_input(where, shown, replay, suspect=dropped or conn.closed):
            self.close_all()
            return
        self.tidy(conn, autocommit, sql, ending)

    def tidy(self, conn, autocommit, sql, ending):
        """Ends failed or finished transactions; restores statement_timeout."""
        self.watchdog.arm(conn)
        try:
            if conn.closed or conn.info.transaction_status in (
                    psycopg.pq.TransactionStatus.ACTIVE, psycopg.pq.TransactionStatus.UNKNOWN):
                return  # reconnected on next use
            status = conn.info.transaction_status
            if autocommit:
                if status == psycopg.pq.TransactionStatus.INERROR:
                    conn.execute("ROLLBACK")
            else:
                if status == psycopg.pq.TransactionStatus.INERROR or ending == "rollback":
                    conn.rollback()
                elif ending == "commit":
                    conn.commit()
            if RESETS_TIMEOUT.search(sql):
                conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
                if not autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS \
                        and ending != "keep":
                    conn.commit()
        except psycopg.Error:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        finally:
            self.watchdog.disarm()

    def run(self, indices, deadline):
        done = 0
        for i in indices:
            if deadline is not None and time.monotonic() > deadline:
                break
            self.run_one(i)
            done += 1
            if (i + 1) % HEALTH_EVERY == 0:
                self.batch_end(i)
        self.batch_end(indices[-1] if done else -1, final=True)
        self.watchdog.stop_flag = True
        return done

    def batch_end(self, i, final=False):
        self.close_all()
        where = f"sql health after #{i}" + (" (end)" if final else "")
        text = f"(the inputs sql #{max(0, i - HEALTH_EVERY + 1)}..#{i})"
        if self.fuzzer.check_health(where, text, f"sql:{max(0, i - HEALTH_EVERY + 1)}-{i}"):
            bounded(self.cleanup_streams)
            self.fuzzer.after_input(where, text, None)


# ------------------------------------------------------------- wire round

KNOWN_TYPES = b"QPBDESHCdcfFXp"


def msg(t, body):
    return t + struct.pack("!i", len(body) + 4) + body


def cstr(s):
    return (s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s) + b"\0"


def startup_packet(params=None, version=196608, terminate=True):
    if params is None:
        params = [("user", "sluice"), ("database", "sluice"), ("statement_timeout", "2000")]
    body = struct.pack("!i", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + (b"\0" if terminate else b"")
    return struct.pack("!i", len(body) + 4) + body


WIRE_SQL = ["SELECT 1", "SELECT * FROM fz_int LIMIT 3", "SELECT v FROM fz_vec ORDER BY v <-> '[1,2,3]' LIMIT 2",
            "INSERT INTO fz_int (id, n) VALUES (-7, 7)", "BEGIN", "COMMIT", "ROLLBACK", "", ";", "SELECT 1; SELECT 2",
            "COPY fz_int (id, n) FROM STDIN", "COPY fz_int TO STDOUT", "COPY fz_vec TO STDOUT (FORMAT binary)",
            "SELECT pg_sleep(0.01)", "SELECT 1/0", "SHOW ALL", "SET statement_timeout = 0", "SYNTAX ERROR",
            "SELECT '[1,2,3]'::vector(3)", "PREPARE p1 AS SELECT $1::int8", "EXECUTE p1(5)", "DEALLOCATE ALL"]
PARSE_SQL = ["SELECT $1::int8", "SELECT $1::text, $2::int4", "INSERT INTO fz_int (id, s) VALUES ($1, $2)",
             "SELECT $1::vector(3) <-> '[1,2,3]'", "SELECT $1", "SELECT $1 + $2", "SELECT * FROM fz_vec WHERE id = $1",
             "SELECT 1", "COPY fz_int FROM STDIN", "BEGIN", "SELECT $2", "SELECT $99999", "SELECT $0", ""]
OIDS = [0, 20, 23, 25, 16, 701, 17, 1700, 114, 2950, 1184, 999999, 0xFFFFFFFF, 705]


class WireCase:
    """One connection's worth of frontend bytes, with a label per message."""

    def __init__(self, rng, corpus):
        self.rng, self.corpus = rng, corpus
        self.parts = []  # (label, bytes)

    def add(self, label, data):
        self.parts.append((label, data))

    # valid messages ----------------------------------------------------
    def query(self):
        r = self.rng.random()
        if r < 0.6:
            sql = self.rng.choice(WIRE_SQL)
        elif r < 0.85:
            sql = self.rng.choice(self.corpus)
        else:
            raw = self.rng.randbytes(self.rng.randint(1, 40)).replace(b"\0", b"\x80")
            return ("Query(raw bytes)", msg(b"Q", raw + b"\0"))
        return (f"Query({sql[:60]!r})", msg(b"Q", cstr(sql)))

    def parse(self):
        name = self.rng.choice(["", "s1", "s2"])
        sql = self.rng.choice(PARSE_SQL)
        oids = [self.rng.choice(OIDS) for _ in range(self.rng.choice([0, 0, 1, 2, 3]))]
        body = cstr(name) + cstr(sql) + struct.pack("!h", len(oids)) + b"".join(struct.pack("!I", o) for o in oids)
        return (f"Parse({name!r}, {sql!r}, {oids})", msg(b"P", body))

    def param_value(self, fmt):
        r = self.rng.random()
        if r < 0.15:
            return struct.pack("!i", -1), "NULL"
        if fmt == 1 and r < 0.6:
            v = self.rng.choice([struct.pack("!q", self.rng.randint(-2 ** 63, 2 ** 63 - 1)), b"\x01\x02\x03",
                                 b"", struct.pack("!i", 5), struct.pack("!d", float("nan")),
                                 struct.pack("!hh", 3, 0) + struct.pack("!fff", 1, 2, 3)])
            return struct.pack("!i", len(v)) + v, f"bin{v!r}"
        if r < 0.75:
            v = self.rng.choice([b"5", b"-1", b"9223372036854775808", b"[1,2,3]", b"abc", b"", b"\xff\xfe", b"NaN"])
            return struct.pack("!i", len(v)) + v, repr(v)
        if r < 0.85:
            ln = self.rng.choice([-2, -100, 0x7fffffff, 1000])
            return struct.pack("!i", ln) + b"xy", f"len={ln}"
        return struct.pack("!i", 3) + b"x", "short"

    def bind(self):
        rng = self.rng
        portal = rng.choice(["", "p1"])
        stmt = rng.choice(["", "s1", "s2", "nope"])
        nparams = rng.choice([0, 1, 1, 2, 3, 5, -1, 32767])
        nfmt = rng.choice([0, 1, nparams if 0 <= nparams < 8 else 1, 3, -1])
        fmts = [rng.choice([0, 1, 1, 2, -1, 65535 - 65536]) for _ in range(max(0, min(nfmt, 8)))]
        body = cstr(portal) + cstr(stmt) + struct.pack("!h", nfmt) + b"".join(struct.pack("!h", f) for f in fmts)
        body += struct.pack("!h", nparams)
        shown = []
        for k in range(max(0, min(nparams, 6))):
            fmt = fmts[k] if len(fmts) > 1 and k < len(fmts) else (fmts[0] if fmts else 0)
            v, s = self.param_value(fmt)
            body += v
            shown.append(s)
        nres = rng.choice([0, 1, 2, -1])
        body += struct.pack("!h", nres) + b"".join(struct.pack("!h", rng.choice([0, 1, 2])) for _ in range(max(0, nres)))
        return (f"Bind({portal!r}, {stmt!r}, fmts={fmts}, n={nparams}, {shown}, res={nres})", msg(b"B", body))

    def valid(self):
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            return self.query()
        if r < 0.35:
            return self.parse()
        if r < 0.5:
            return self.bind()
        if r < 0.58:
            kind = rng.choice([b"S", b"P", b"X"])
            name = rng.choice(["", "s1", "p1"])
            return (f"Describe({kind!r}, {name!r})", msg(b"D", kind + cstr(name)))
        if r < 0.66:
            portal = rng.choice(["", "p1"])
            n = rng.choice([0, 1, -1, 0x7fffffff])
            return (f"Execute({portal!r}, {n})", msg(b"E", cstr(portal) + struct.pack("!i", n)))
        if r < 0.74:
            return ("Sync", msg(b"S", b""))
        if r < 0.77:
            return ("Flush", msg(b"H", b""))
        if r < 0.8:
            kind = rng.choice([b"S", b"P"])
            return (f"Close({kind!r})", msg(b"C", kind + cstr(rng.choice(["", "s1", "p1", "nope"]))))
        if r < 0.88:
            data = rng.choice([b"1\t2\n", b"x\ty\n", b"\\.\n", rng.randbytes(rng.randint(0, 30)), b"3\t\\N\n"])
            return (f"CopyData({data!r})", msg(b"d", data))
        if r < 0.92:
            return ("CopyDone", msg(b"c", b""))
        if r < 0.95:
            return ("CopyFail", msg(b"f", cstr("fuzz says no")))
        if r < 0.97:
            return ("FunctionCall", msg(b"F", struct.pack("!ih", 1234, 0) + struct.pack("!hh", 0, 0)))
        if r < 0.985:
            return ("PasswordMessage", msg(b"p", cstr("secret")))
        return ("Terminate", msg(b"X", b""))

    def mutated(self):
        label, data = self.valid()
        rng = self.rng
        k = rng.randint(0, 60)
        data = bytearray(data)
        if k < 10:
            cut = rng.randint(0, max(0, len(data) - 1))
            return (f"{label}[truncated to {cut} of {len(data)}]", bytes(data[:cut]))
        if k < 20:
            flips = []
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(data))
                bit = rng.randrange(8)
                data[pos] ^= 1 << bit
                flips.append((pos, bit))
            return (f"{label}[bits flipped {flips}]", bytes(data))
        if k < 30:
            true_len = struct.unpack("!i", data[1:5])[0]
            new = true_len + rng.choice([-5, -3, -1, 1, 2, 7, 100])
            data[1:5] = struct.pack("!i", new)
            return (f"{label}[length {true_len}->{new}]", bytes(data))
        if k < 40:
            new = rng.choice([0x7fffffff, 0x40000000, 0x10000000, 0x01000000, -0x80000000, -1, 0, 1, 3])
            data[1:5] = struct.pack("!i", new)
            return (f"{label}[length field {new:#x}]", bytes(data))
        if k < 50:
            t = rng.choice([b for b in range(256) if b not in KNOWN_TYPES])
            data[0] = t
            return (f"{label}[type byte {t:#04x}]", bytes(data))
        if k < 59:
            junk = rng.randbytes(rng.randint(1, 64))
            return (f"garbage({junk!r})", junk)
        # a body larger than the protocol allows, sent for real
        size = rng.choice([1 << 20, 1 << 20, 9 << 20, 40 << 20])
        return (f"Query(of {size} bytes)", msg(b"Q", b"SELECT '" + b"x" * size + b"'\0"))

    # startup fuzz --------------------------------------------------------
    def bad_startup(self):
        rng = self.rng
        k = rng.randint(0, 13)
        if k == 0:
            v = rng.choice([0, 1, 0x00020000, 0x00030001, 0x00030002, 0x00040000, 0x7fffffff, -1,
                            (1234 << 16) | 5678, 80877105, 0x0003FFFF])
            self.add(f"Startup(version {v:#x})", startup_packet(version=v))
        elif k == 1:
            self.add("Startup(no final NUL)", startup_packet(terminate=False))
        elif k == 2:
            body = struct.pack("!i", 196608) + b"user\0sluice"  # value without NUL
            self.add("Startup(value without NUL)", struct.pack("!i", len(body) + 4) + body)
        elif k == 3:
            params = rng.choice([
                [], [("database", "sluice")], [("user", "")], [("user", "sluice"), ("database", "nope")],
                [("user", "sluice")] + [(f"k{i}", "v") for i in range(2000)],
                [("user", "sluice"), ("application_name", "x" * 100_000)],
                [("user", "sluice"), ("options", "-c statement_timeout=-5 --nonsense")],
                [("user", "sluice"), ("replication", "database")],
                [("user", odd_unicode(rng, 20))], [("user", "sluice"), ("", "")],
                [("user", "sluice"), ("client_encoding", "LATIN1")], [("user", "sluice"), ("TimeZone", "Mars/Base")],
                [("user", "sluice"), ("statement_timeout", "9223372036854775808")],
                [("user", "sluice"), ("DateStyle", "nonsense, nonsense")],
                [("user", "sluice"), ("search_path", "\"" * 1000)],
                [("user", "sluice"), ("extra_float_digits", "99999")],
                [("user", "sluice"), ("_pq_.something", "1")],
            ])
            self.add(f"Startup(params {shorten(params, 120)})", startup_packet(params=params))
        elif k == 4:
            raw = bytes(b if b else 1 for b in rng.randbytes(rng.randint(1, 30)))
            params = [("user", raw), ("database", "sluice")]
            self.add(f"Startup(user {raw!r})", startup_packet(params=params))
        elif k == 5:
            n = rng.choice([0x7fffffff, 0x10000000, 10001, 10_000_000, -1, 0, 4, 7, 8, 9])
            pkt = bytearray(startup_packet())
            pkt[0:4] = struct.pack("!i", n)
            self.add(f"Startup(length field {n})", bytes(pkt))
        elif k == 6:
            self.add("SSLRequest", struct.pack("!ii", 8, 80877103))
            self.add("Startup", startup_packet())
            self.valid_tail()
        elif k == 7:
            self.add("SSLRequest", struct.pack("!ii", 8, 80877103))
            self.add("SSLRequest", struct.pack("!ii", 8, 80877103))
            self.add("Startup", startup_packet())
        elif k == 8:
            self.add("GSSENCRequest", struct.pack("!ii", 8, 80877104))
            self.add("SSLRequest", struct.pack("!ii", 8, 80877103))
            self.add("Startup", startup_packet())
            self.valid_tail()
        elif k == 9:
            self.add("SSLRequest(+junk)", struct.pack("!ii", 8, 80877103) + rng.randbytes(20))
        elif k == 10:
            ln = rng.choice([16, 16, 12, 20, 8 + 4 + 256, 0x7fffffff])
            pid, key = rng.randint(-2 ** 31, 2 ** 31 - 1), rng.randbytes(max(0, min(ln, 300) - 12))
            self.add(f"CancelRequest(len {ln}, pid {pid}, key {key.hex()})",
                     struct.pack("!iii", ln, 80877102, pid) + key)
        elif k == 11:
            self.add("TLS ClientHello-like", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(60))
        elif k == 12:
            label, data = self.query()
            self.add(f"{label} before startup", data)
        else:
            junk = rng.randbytes(rng.randint(1, 200))
            self.add(f"garbage({junk!r})", junk)

    def valid_tail(self):
        for _ in range(self.rng.randint(0, 3)):
            self.add(*self.valid())

    def session_messages(self):
        rng = self.rng
        for _ in range(rng.randint(1, 10)):
            r = rng.random()
            if r < 0.12:
                # a whole extended-protocol round, maybe with one bad part
                seq = [self.parse(), self.bind(), ("Describe(P)", msg(b"D", b"P\0")),
                       ("Execute", msg(b"E", b"\0" + struct.pack("!i", 0))), ("Sync", msg(b"S", b""))]
                if rng.random() < 0.5:
                    j = rng.randrange(len(seq))
                    seq[j] = self.mutated()
                for part in seq:
                    self.add(*part)
            elif r < 0.2:
                self.add("Query(COPY fz_int (id, n) FROM STDIN)", msg(b"Q", cstr("COPY fz_int (id, n) FROM STDIN")))
                for _ in range(rng.randint(0, 3)):
                    self.add(*(self.mutated() if rng.random() < 0.3 else
                               (f"CopyData", msg(b"d", rng.choice([b"1\t2\n", b"bad\n", b"1\n", b"\\.\n"])))))
                self.add(*rng.choice([("CopyDone", msg(b"c", b"")), ("CopyFail", msg(b"f", cstr("no"))),
                                      ("Sync", msg(b"S", b"")), ("Query(SELECT 1)", msg(b"Q", cstr("SELECT 1")))]))
            elif r < 0.23:
                self.add("CancelRequest(forged key, own pid)", b"<cancel>")
            elif r < 0.63:
                self.add(*self.valid())
            else:
                self.add(*self.mutated())
        if rng.random() < 0.5:
            self.add("Sync", msg(b"S", b""))
            self.add("Query(SELECT 1)", msg(b"Q", cstr("SELECT 1")))
        if rng.random() < 0.3:
            self.add("Terminate", msg(b"X", b""))


def make_wire_case(seed, i, corpus):
    rng = __import__("random").Random(f"{seed}/wire/{i}")
    case = WireCase(rng, corpus)
    session = rng.random() < 0.8
    if session:
        case.session_messages()
    else:
        case.bad_startup()
    return session, case


def backend_messages(buf):
    """(type, body) of each complete backend message; single-byte SSL/GSS
    answers are skipped."""
    out, pos = [], 0
    while pos + 5 <= len(buf):
        t = buf[pos]
        n = int.from_bytes(buf[pos + 1:pos + 5], "big")
        if n < 4 or n > (1 << 30):
            if t in b"NSG":
                pos += 1
                continue
            break
        if pos + 1 + n > len(buf):
            break
        out.append((chr(t), bytes(buf[pos + 5:pos + 1 + n])))
        pos += 1 + n
    return out


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def exchange(sock, payload, deadline, half_close=True, until=None):
    """Sends payload while reading replies; then (half_close) shuts the
    write side and reads until the server closes or the deadline passes.
    With `until`, stops as soon as until(received) is true."""
    sock.setblocking(False)
    view = memoryview(payload)
    sent = 0
    received = bytearray()
    write_open = True
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(received), "timeout"
        want_write = write_open and sent < len(payload)
        try:
            r, w, _ = select.select([sock], [sock] if want_write else [], [], min(left, 0.5))
        except (OSError, ValueError):
            return bytes(received), "error"
        if r:
            try:
                chunk = sock.recv(1 << 16)
            except BlockingIOError:
                chunk = None
            except OSError:
                return bytes(received), "reset"
            if chunk == b"":
                return bytes(received), "closed"
            if chunk:
                received += chunk
                if until is not None and until(received):
                    return bytes(received), "done"
        if w:
            try:
                sent += sock.send(view[sent:sent + (1 << 16)])
            except BlockingIOError:
                pass
            except OSError:
                write_open = False
        if write_open and sent >= len(payload) and half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            write_open = False


def ready(buf):
    return any(t in ("Z", "E") for t, _ in backend_messages(buf))


class WireRound:
    def __init__(self, fuzzer, seed, corpus):
        self.fuzzer, self.seed = fuzzer, seed
        self.corpus = [s for s in corpus if len(s) < 2000]
        self.port = fuzzer.server.port
        self.stats = {"cases": 0, "closed": 0, "timeout": 0, "errors": 0}

    def cancel_bytes(self, pid, key, rng):
        key = bytearray(key or b"\0\0\0\0")
        key[rng.randrange(len(key))] ^= 1 << rng.randrange(8)
        return struct.pack("!ii", 12 + len(key), 80877102) + struct.pack("!i", pid) + bytes(key)

    def run_case(self, i):
        session, case = make_wire_case(self.seed, i, self.corpus)
        crng = __import__("random").Random(f"{self.seed}/wire/{i}/cancel")
        where = f"wire #{i}"
        replay = f"wire:{i}"
        labels = [label for label, _ in case.parts]
        received = b""
        how = None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                pid, key = 0, b""
                if session:
                    reply, how = exchange(sock, startup_packet(), time.monotonic() + 10, half_close=False, until=ready)
                    for t, body in backend_messages(reply):
                        if t == "K" and len(body) >= 8:
                            pid, key = struct.unpack("!i", body[:4])[0], body[4:]
                    received += reply
                payload = bytearray()
                for label, data in case.parts:
                    if data == b"<cancel>":
                        # a CancelRequest with this session's pid and a forged key, on its own connection
                        try:
                            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
                                exchange(c, self.cancel_bytes(pid, key, crng), time.monotonic() + 3)
                        except OSError:
                            pass
                        continue
                    payload += data
                reply, how = exchange(sock, bytes(payload), time.monotonic() + 8)
                received += reply
                self.stats["closed" if how in ("closed", "reset") else "timeout"] += 1
        except OSError:
            pass
        self.stats["cases"] += 1
        shown = " ; ".join(labels) + ("" if session else "  (no valid startup)")
        data_hex = b"".join(d for _, d in case.parts if d != b"<cancel>")
        text = f"{'Startup; ' if session else ''}{shown}  bytes={shorten(data_hex.hex(), 400)}"
        for t, body in backend_messages(received):
            if t != "E":
                continue
            self.stats["errors"] += 1
            fields = error_fields(body)
            code = fields.get("C")
            if not code:
                self.fuzzer.findings.add("internal error", where, text,
                                         f"ErrorResponse without SQLSTATE: {fields}", replay)
            elif code == "XX000":
                self.fuzzer.findings.add("internal error", where, text,
                                         f"XX000: {fields.get('M', '')}", replay)
        self.fuzzer.after_input(where, text, replay, suspect=(how == "reset"))
        return 1 + len([p for p in case.parts if p[1] != b"<cancel>"]) if session else len(case.parts)

    def run(self, indices, budget, deadline):
        messages = 0
        next_check = HEALTH_EVERY
        last = -1
        for i in indices:
            if budget is not None and messages >= budget:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            messages += self.run_case(i)
            last = i
            if messages >= next_check:
                next_check = (messages // HEALTH_EVERY + 1) * HEALTH_EVERY
                self.fuzzer.check_health(f"wire health after #{i}", f"(the cases up to wire #{i})", f"wire:{i}")
        self.fuzzer.check_health(f"wire health after #{last} (end)", f"(the cases up to wire #{last})", f"wire:{last}")
        return messages


# ------------------------------------------------------------------- main


def parse_only(spec):
    kind, _, rng = spec.partition(":")
    if kind not in ("sql", "wire") or not rng:
        raise SystemExit("--only takes sql:I, sql:I-J, wire:I or wire:I-J")
    lo, _, hi = rng.partition("-")
    return kind, int(lo), int(hi or lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("port", type=int)
    ap.add_argument("--statements", type=int, default=1500)
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=None, help="give each round at most half of this many seconds")
    ap.add_argument("--strict", action="store_true", help="internal errors fail the check too")
    ap.add_argument("--only", default=None, help="replay inputs: sql:I[-J] or wire:I[-J]")
    ap.add_argument("--memory-limit-mb", type=int, default=8192, help="RLIMIT_AS of the server (0: none)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (data, server.log)")
    args = ap.parse_args()

    corpus = load_corpus()
    if not corpus:
        print("no statements found under sql-tests/slt", file=sys.stderr)
        return 2
    findings = Findings(args.seed)
    work = tempfile.mkdtemp(prefix="sluice-fuzz-")
    server = Server(os.path.abspath(args.binary), args.port, work, args.memory_limit_mb)
    statements = messages = 0
    started = time.monotonic()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    sql_round = None
    fuzzer = None
    try:
        if not server.start(fresh=True):
            print("sluice did not start; log:\n" + server.tail(30), file=sys.stderr)
            return 2
        fuzzer = Fuzzer(server, findings, on_fresh=lambda: bounded(lambda: setup_tables(server.port, corpus)))
        bounded(lambda: setup_tables(server.port, corpus))
        only = parse_only(args.only) if args.only else None
        print(f"fuzz: seed {args.seed}, corpus of {len(corpus)} statements, server log {server.log_path}", flush=True)

        sql_deadline = None
        if args.seconds is not None:
            sql_deadline = time.monotonic() + args.seconds / 2
        if only is None or only[0] == "sql":
            indices = list(range(args.statements)) if only is None else list(range(only[1], only[2] + 1))
            if indices:
                sql_round = SqlRound(fuzzer, args.seed, corpus)
                statements = sql_round.run(indices, sql_deadline)
                print(f"fuzz: sql round: {statements} statements in {time.monotonic() - started:.1f} s "
                      f"({', '.join(f'{k} {v}' for k, v in sql_round.stats.items())})", flush=True)
        if only is None or only[0] == "wire":
            t0 = time.monotonic()
            wire_deadline = None if args.seconds is None else t0 + args.seconds / 2
            wire = WireRound(fuzzer, args.seed, corpus)
            if only is None:
                messages = wire.run(range(10 ** 9), args.messages, wire_deadline)
            else:
                messages = wire.run(range(only[1], only[2] + 1), None, None)
            print(f"fuzz: wire round: {messages} messages in {wire.stats['cases']} connections, "
                  f"{time.monotonic() - t0:.1f} s ({', '.join(f'{k} {v}' for k, v in wire.stats.items())})",
                  flush=True)
        fuzzer.check_health("final", "(after both rounds)", None)
    except KeyboardInterrupt:
        print("fuzz: interrupted", flush=True)
    finally:
        if sql_round is not None:
            sql_round.close_all()
        server.stop()
        for panic in panics_in(server.new_log()):
            findings.add("panic", "shutdown", "(stopping the server)", panic)
        if args.keep or findings.items:
            keep_log = os.path.join(tempfile.gettempdir(), f"sluice-fuzz-seed{args.seed}-{os.getpid()}.log")
            try:
                shutil.copyfile(server.log_path, keep_log)
                print(f"fuzz: server log kept at {keep_log}")
            except OSError:
                pass
        server.log.close()
        if args.keep:
            print(f"fuzz: work directory kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    findings.report()
    print(f"fuzz: {time.monotonic() - started:.1f} s in all, {fuzzer.restarts if fuzzer else 0} server restarts")
    crashes, hangs = findings.count("crash"), findings.count("hang")
    internal, panics = findings.count("internal error"), findings.count("panic")
    print(f"fuzz: statements={statements} messages={messages} crashes={crashes} hangs={hangs} "
          f"internal_errors={internal} panics={panics}")
    # A panic caught at a boundary (a statement's, a connection's) costs a
    # statement or a malformed connection, not the server: reported, and
    # failing only with --strict, like internal errors.
    bad = crashes + hangs + (internal + panics if args.strict else 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
