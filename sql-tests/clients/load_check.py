#!/usr/bin/env python3
"""Concurrent mixed load against a `sluice serve` of its own: the CI round of
benchmarks/concurrency (the same driver, mixed.py, with fewer clients, a
shorter run and a smaller table).

It starts the server on PORT with a fresh data directory and
--memory-limit (refusing to start when something already listens there: it
would be measured instead), preloads t(id BIGINT, name TEXT,
score DOUBLE PRECISION) with --preload rows, then --clients asyncpg
connections loop for --seconds over the seeded mix of single-row INSERTs,
point queries, range aggregates and EMBED('minilm', text) calls, and checks:

  - no statement failed (an SQLSTATE, a client-side timeout or a wrong
    result: the point query's row, the aggregate's count and average, the
    vector's 384 floats); the first errors are printed;
  - every kind of statement ran at least once;
  - every acknowledged insert is there: count(*) = preload + inserts;
  - the server's memory (VmRSS sampled every 0.5 s, and VmHWM) stayed
    under --memory-limit;
  - the server is still alive and stops cleanly on SIGTERM.

The last line is `load: clients=C seconds=S statements=N qps=Q errors=E
inserts=I rows=R peak_rss_mib=M limit_mib=L`; the exit status is non-zero
when a check failed.

Usage: load_check.py SLUICE_BINARY PORT [--clients 16] [--seconds 8]
       [--preload 20000] [--memory-limit 1GiB] [--mix insert=20,…] [--seed 42]
"""

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "concurrency"))
import mixed  # noqa: E402


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(binary, port, data_dir, log, memory_limit, max_connections):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
         "--memory-limit", memory_limit, "--max-connections", str(max_connections)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sluice exited during start-up (status {proc.returncode})")
        if listening(port):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("sluice did not start within 60 s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("port", type=int, help="0: a free port the OS picks (a fixed one may be a client's "
                    "ephemeral port by the time the server binds it)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--preload", type=int, default=20_000)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--mix", default=mixed.DEFAULT_MIX)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if args.port == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            args.port = s.getsockname()[1]

    if listening(args.port):
        print(f"FAIL something already listens on 127.0.0.1:{args.port}")
        return 1
    work = tempfile.mkdtemp(prefix="sluice-load-check-")
    log_path = os.path.join(work, "server.log")
    log = open(log_path, "ab")
    failures = []
    proc = None
    try:
        proc = start(os.path.abspath(args.binary), args.port, os.path.join(work, "data"), log,
                     args.memory_limit, args.clients + 20)
        run_args = argparse.Namespace(
            engine="sluice", host="127.0.0.1", port=args.port, user="sluice", dbname="sluice",
            clients=args.clients, duration=args.seconds, preload=args.preload, mix=args.mix,
            seed=args.seed, statement_timeout=30, server_pid=proc.pid,
            memory_limit=args.memory_limit, pg_index=False, no_setup=False)
        r = asyncio.run(mixed.run(run_args))
        mixed.print_errors(r, out=sys.stdout)
        failures += r["failures"]
        weights = mixed.parse_mix(args.mix)
        for kind in mixed.KINDS:
            k = r["kinds"][kind]
            print(f"  {kind:<6} ok={k['ok']:<6} errors={k['errors']:<4} p50={mixed.fmt_ms(k['p50_ms'])} ms "
                  f"p99={mixed.fmt_ms(k['p99_ms'])} ms")
            if weights.get(kind, 0) > 0 and k["ok"] == 0:
                failures.append(f"no {kind} statement succeeded")
        if r["rss_samples"] == 0:
            failures.append("the server's memory was never sampled")
        if proc.poll() is not None:
            failures.append(f"the server exited (status {proc.returncode})")
        else:
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=30)
                if status != 0:
                    failures.append(f"the server exited with status {status} on SIGTERM")
            except subprocess.TimeoutExpired:
                failures.append("the server did not stop within 30 s of SIGTERM")
        for f in failures:
            print(f"FAIL {f}")
        print(f"load: clients={args.clients} seconds={args.seconds:g} statements={r['total_ok']} "
              f"qps={r['qps']:.1f} errors={r['errors']} inserts={r['inserted']} rows={r['rows_after']} "
              f"peak_rss_mib={max(r['peak_rss'] or 0, r['vm_hwm'] or 0) / 2**20:.0f} "
              f"limit_mib={r['memory_limit'] / 2**20:.0f}")
    except Exception as e:
        failures.append(f"{type(e).__name__}: {e}")
        print(f"FAIL {type(e).__name__}: {e}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        if failures:
            with open(log_path, errors="replace") as f:
                tail = f.readlines()[-30:]
            print("--- server log tail")
            sys.stdout.write("".join(tail))
        subprocess.run(["rm", "-rf", work])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
