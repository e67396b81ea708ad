"""Crash safety: SIGKILL the server at random moments during a stream of
INSERTs, restart it on the same data directory, and check that every
acknowledged row is there exactly once and that nothing but acknowledged
(or in-flight at the kill) rows is.

Usage: crash_check.py SLUICE_BINARY PORT [KILLS]
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

ROWS_PER_INSERT = 5


def start(binary, port, data_dir, log, env=None, cwd=None, extra_args=()):
    """Starts `sluice serve` (with `extra_args`) and waits until it accepts
    connections."""
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir, *extra_args],
        stdout=log,
        stderr=log,
        env=env,
        cwd=cwd,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", connect_timeout=2).close()
            return proc
        except psycopg.OperationalError:
            if proc.poll() is not None:
                raise RuntimeError(f"sluice exited during start-up (status {proc.returncode})")
            time.sleep(0.05)
    raise RuntimeError("sluice did not start")


def writer(port, first_id, acked, in_flight, stop):
    """Inserts batches of rows until the connection dies; records which
    batches the server acknowledged."""
    next_id = first_id
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
            while not stop.is_set():
                ids = list(range(next_id, next_id + ROWS_PER_INSERT))
                in_flight.update(ids)
                values = ", ".join(f"({i}, 'row {i}')" for i in ids)
                conn.execute(f"INSERT INTO crash_rows VALUES {values}")
                acked.update(ids)
                in_flight.difference_update(ids)
                next_id += ROWS_PER_INSERT
    except psycopg.Error:
        pass  # the server was killed mid-statement
    return next_id


def main():
    binary, port = sys.argv[1], int(sys.argv[2])
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rng = random.Random(int(os.environ.get("CRASH_SEED", "577")))
    data_dir = tempfile.mkdtemp(prefix="sluice-crash-")
    log = open(os.path.join(data_dir, "server.log"), "ab")
    acked, maybe = set(), set()

    proc = start(binary, port, os.path.join(data_dir, "data"), log)
    with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
        conn.execute("CREATE TABLE crash_rows (id BIGINT, note TEXT)")
    next_id = 0
    for round_no in range(kills):
        in_flight, stop = set(), threading.Event()
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(next=writer(port, next_id, acked, in_flight, stop))
        )
        thread.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        thread.join()
        maybe |= in_flight
        next_id = result.get("next", next_id) + 1000  # fresh ids after each crash
        proc = start(binary, port, os.path.join(data_dir, "data"), log)
        with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice") as conn:
            found = [r[0] for r in conn.execute("SELECT id FROM crash_rows").fetchall()]
        missing = acked - set(found)
        duplicates = len(found) - len(set(found))
        unexpected = set(found) - acked - maybe
        if missing or duplicates or unexpected:
            print(f"round {round_no}: missing {sorted(missing)[:10]}, duplicates {duplicates}, "
                  f"unexpected {sorted(unexpected)[:10]}")
            proc.kill()
            sys.exit(1)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    in_flight_found = len(set(found) & maybe)
    print(f"crash check: {kills} kills, {len(acked)} acknowledged rows, {len(found)} rows found "
          f"({in_flight_found} from statements in flight at a kill), 0 missing, 0 duplicated")


if __name__ == "__main__":
    main()
