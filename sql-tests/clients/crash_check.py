"""Crash safety: SIGKILL the server at random moments during a stream of
INSERTs, restart it on the same data directory, and check that every
acknowledged row is there exactly once and that nothing but acknowledged
(or in-flight at the kill) rows is.

A second table has an HNSW index and takes INSERTs large enough for a
graph each (kills land while graphs are built, committed and compacted):
after every restart its rows are checked the same way, and the index must
agree with the table — every data file of 1,000 rows or more has its graph
in the newest manifest and on disk, no graph is left unlisted, and a
search through the index returns the rows an exact search does.

Usage: crash_check.py SLUICE_BINARY PORT [KILLS]
"""

import json
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
# The indexed table's rows: one INSERT makes a file large enough for a graph.
VECTOR_DIM = 8
VECTOR_ROWS_PER_INSERT = 1200


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


def plain_rows(ids):
    return "INSERT INTO crash_rows VALUES " + ", ".join(f"({i}, 'row {i}')" for i in ids)


def vector_rows(ids):
    rng = random.Random(ids[0])
    return "INSERT INTO crash_vecs VALUES " + ", ".join(
        f"({i}, '[{','.join(f'{rng.uniform(-1, 1):.4f}' for _ in range(VECTOR_DIM))}]')" for i in ids
    )


def writer(port, first_id, acked, in_flight, stop, rows_per_insert=ROWS_PER_INSERT, statement=plain_rows):
    """Inserts batches of rows until the connection dies; records which
    batches the server acknowledged."""
    next_id = first_id
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
            while not stop.is_set():
                ids = list(range(next_id, next_id + rows_per_insert))
                in_flight.update(ids)
                conn.execute(statement(ids))
                acked.update(ids)
                in_flight.difference_update(ids)
                next_id += rows_per_insert
    except psycopg.Error:
        pass  # the server was killed mid-statement
    return next_id


def index_agrees_with_table(conn, table_dir, rng):
    """The newest manifest lists a graph for every data file of 1,000 rows
    or more, each on disk, and nothing else under indexes/; a search
    through the index returns what an exact search returns. Returns a
    complaint, or None."""
    manifests = sorted(os.listdir(os.path.join(table_dir, "_manifest")))
    with open(os.path.join(table_dir, "_manifest", manifests[-1])) as f:
        manifest = json.load(f)
    # Per data file its part of a graph ({"graph", "slot"}): the files one
    # write added share one graph.
    graphs = manifest["vector_indexes"][0]["files"]
    large = [f["path"] for f in manifest["files"] if f["rows"] >= 1000]
    if sorted(graphs) != sorted(large):
        return f"graphs for {sorted(graphs)}, files of 1000+ rows {sorted(large)}"
    listed = sorted({part["graph"] for part in graphs.values()})
    on_disk = sorted(f"indexes/{name}" for name in os.listdir(os.path.join(table_dir, "indexes")))
    if on_disk != listed:
        return f"graphs listed {listed}, on disk {on_disk}"
    # An HNSW graph leaves a few nodes unreachable whatever the search
    # breadth (on CI's data recall was 0.999 at ef_search 64 and at 1000),
    # so the index may miss a row now and then; a graph that is stale or
    # built from another file misses whole neighbourhoods. Hence a recall
    # bound over 20 queries rather than equality.
    conn.execute("SET vector.ef_search = 1000")
    found = 0
    for _ in range(20):
        q = "[" + ",".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(VECTOR_DIM)) + "]"
        searched = conn.execute(f"SELECT id FROM crash_vecs ORDER BY v <-> '{q}' LIMIT 10").fetchall()
        exact = conn.execute(f"SELECT id FROM crash_vecs ORDER BY v <-> '{q}', id LIMIT 10").fetchall()
        overlap = len(set(searched) & set(exact))
        if overlap < 8 or len(searched) != 10:
            return f"index search {searched} vs exact {exact}"
        found += overlap
    if found < 194:
        return f"index search recall {found / 200:.3f} over 20 queries (at least 0.97 expected)"
    plan = str(conn.execute(f"EXPLAIN SELECT id FROM crash_vecs ORDER BY v <-> '{q}' LIMIT 10").fetchall())
    if large and "graph walk" not in plan:
        return f"the index is not used: {plan}"
    return None


def main():
    binary, port = sys.argv[1], int(sys.argv[2])
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rng = random.Random(int(os.environ.get("CRASH_SEED", "577")))
    data_dir = tempfile.mkdtemp(prefix="sluice-crash-")
    log = open(os.path.join(data_dir, "server.log"), "ab")
    plain = kill_during_inserts(binary, port, data_dir, log, rng, kills, "crash_rows", ROWS_PER_INSERT, plain_rows)
    indexed = kill_during_inserts(
        binary, port, data_dir, log, rng, max(3, kills // 2), "crash_vecs", VECTOR_ROWS_PER_INSERT, vector_rows
    )
    print(f"crash check: {plain}; with an hnsw index, {indexed}, index and table agreeing after every restart")


def kill_during_inserts(binary, port, data_dir, log, rng, kills, table, rows_per_insert, statement):
    """Runs `kills` rounds of inserts into `table` ended by a SIGKILL;
    exits on a lost, duplicated or unexpected row (or an index that
    disagrees with its table). Returns a summary."""
    acked, maybe = set(), set()
    proc = start(binary, port, os.path.join(data_dir, "data"), log)
    with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
        if table == "crash_vecs":
            conn.execute(f"CREATE TABLE crash_vecs (id BIGINT, v VECTOR({VECTOR_DIM}))")
            conn.execute("CREATE INDEX crash_vecs_v ON crash_vecs USING hnsw (v vector_l2_ops)")
        else:
            conn.execute("CREATE TABLE crash_rows (id BIGINT, note TEXT)")
    next_id = 0
    try:
        for round_no in range(kills):
            in_flight, stop = set(), threading.Event()
            result = {}
            thread = threading.Thread(
                target=lambda: result.update(
                    next=writer(port, next_id, acked, in_flight, stop, rows_per_insert, statement)
                )
            )
            thread.start()
            time.sleep(rng.uniform(0.05, 0.6) if table == "crash_rows" else rng.uniform(0.3, 2.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop.set()
            thread.join()
            maybe |= in_flight
            # Fresh ids after each crash, past the batch that was in flight.
            next_id = result.get("next", next_id) + rows_per_insert + 1000
            proc = start(binary, port, os.path.join(data_dir, "data"), log)
            with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
                found = [r[0] for r in conn.execute(f"SELECT id FROM {table}").fetchall()]
                complaint = None
                if table == "crash_vecs":
                    complaint = index_agrees_with_table(
                        conn, os.path.join(data_dir, "data", "tables", "public", table), rng
                    )
            if complaint:
                print(f"round {round_no}: {complaint}")
                proc.kill()
                sys.exit(1)
            missing = acked - set(found)
            duplicates = len(found) - len(set(found))
            unexpected = set(found) - acked - maybe
            if missing or duplicates or unexpected:
                print(f"round {round_no}: missing {sorted(missing)[:10]}, duplicates {duplicates}, "
                      f"unexpected {sorted(unexpected)[:10]}")
                proc.kill()
                sys.exit(1)
    except BaseException:
        # A failing check must not leave its server holding the port the
        # next checks use.
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    in_flight_found = len(set(found) & maybe)
    return (f"{kills} kills, {len(acked)} acknowledged rows, {len(found)} rows found "
            f"({in_flight_found} from statements in flight at a kill), 0 missing, 0 duplicated")


if __name__ == "__main__":
    main()
