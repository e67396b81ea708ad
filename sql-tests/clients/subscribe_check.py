"""SUBSCRIBE from real clients against a running `sluice serve`:

- psycopg 3: DECLARE … CURSOR FOR SUBSCRIBE and FETCH inside a transaction,
  while another connection inserts, updates and deletes the view's table;
  every change arrives as (epoch, op, columns…), an update as a delete and an
  insert in one epoch, and replaying the changes gives the view's content.
- psql: `COPY (SUBSCRIBE v) TO STDOUT` streams the same rows; Ctrl-C
  (SIGINT: psql sends a cancel request) ends it, and so does killing psql;
  either way the server drops the subscription (status table: 0 subscribers).

Usage: python subscribe_check.py HOST PORT
Exits non-zero on the first failed check.
"""
import collections
import signal
import subprocess
import sys
import time

import psycopg
from psycopg import errors


def subscribers(conn, view: str) -> int:
    row = conn.execute(
        "SELECT subscribers FROM sluice_catalog.continuous_queries WHERE name = %s", (view,)
    ).fetchone()
    return int(row[0])


def wait_for(condition, what: str, seconds: float = 10.0) -> None:
    """Polls `condition` (a server-side fact, not a timing guess) until it holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def replay(changes, key_columns: int):
    """The multiset a stream of (epoch, op, row…) changes leaves."""
    content = collections.Counter()
    for change in changes:
        row = tuple(change[2:])
        content[row] += 1 if change[1] == "insert" else -1
    assert all(v >= 0 for v in content.values()), content
    return sorted(row for row, n in content.items() for _ in range(n))


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    args = dict(host=host, port=port, user="sluice", dbname="sluice")
    with psycopg.connect(autocommit=True, **args) as writer:
        writer.execute("CREATE TABLE sub_t (id BIGINT, grp TEXT)")
        writer.execute("INSERT INTO sub_t VALUES (1, 'a'), (2, 'b')")
        writer.execute(
            "CREATE MATERIALIZED VIEW sub_v AS SELECT grp, count(*) AS n FROM sub_t GROUP BY grp"
        )

        # psycopg: DECLARE/FETCH in a transaction (psycopg opens it).
        with psycopg.connect(**args) as reader:
            cur = reader.cursor()
            cur.execute("DECLARE c CURSOR FOR SUBSCRIBE sub_v")
            cur.execute("FETCH ALL FROM c")
            assert [d.name for d in cur.description] == ["epoch", "op", "grp", "n"], cur.description
            changes = cur.fetchall()
            assert sorted((op, grp, n) for _, op, grp, n in changes) == [
                ("insert", "a", 1),
                ("insert", "b", 1),
            ], changes
            assert len({epoch for epoch, *_ in changes}) == 1, "the snapshot is one epoch"

            writer.execute("INSERT INTO sub_t VALUES (3, 'a')")
            cur.execute("FETCH ALL FROM c WITH (timeout = '10s')")
            update = cur.fetchall()
            assert sorted((op, grp, n) for _, op, grp, n in update) == [
                ("delete", "a", 1),
                ("insert", "a", 2),
            ], update
            assert len({epoch for epoch, *_ in update}) == 1, "an update is one epoch"
            assert update[0][0] > changes[0][0], "epochs advance"
            changes += update

            writer.execute("UPDATE sub_t SET grp = 'c' WHERE id = 2")
            writer.execute("DELETE FROM sub_t WHERE id = 1")
            writer.execute("FLUSH")
            cur.execute("FETCH ALL FROM c WITH (timeout = '0s')")
            changes += cur.fetchall()
            content = replay(changes, 1)
            view = sorted(writer.execute("SELECT grp, n FROM sub_v").fetchall())
            assert content == view, (content, view)

            # Nothing new: FETCH waits for its timeout and returns no row.
            cur.execute("FETCH 1 FROM c WITH (timeout = '100ms')")
            assert cur.fetchall() == []
            assert subscribers(writer, "sub_v") == 1
            reader.commit()
            # The cursor closed with its transaction.
            try:
                cur.execute("FETCH 1 FROM c")
                raise AssertionError("the cursor outlived its transaction")
            except errors.InvalidCursorName:
                reader.rollback()
            try:
                cur.execute("DECLARE d CURSOR FOR SUBSCRIBE no_such_view")
                raise AssertionError("expected an error")
            except errors.UndefinedTable:
                reader.rollback()
        wait_for(lambda: subscribers(writer, "sub_v") == 0, "the cursor's subscription to go")

        # psql: COPY (SUBSCRIBE …) TO STDOUT, ended by Ctrl-C.
        # stdbuf: psql writes COPY rows to a pipe in blocks otherwise.
        psql = ["stdbuf", "-oL", "psql", "-h", host, "-p", str(port), "-U", "sluice", "-d", "sluice", "-X", "-q"]
        copy = subprocess.Popen(
            psql + ["-c", "COPY (SUBSCRIBE sub_v WITH (snapshot = false)) TO STDOUT"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: subscribers(writer, "sub_v") == 1, "psql's subscription")
        writer.execute("INSERT INTO sub_t VALUES (4, 'd')")
        first = copy.stdout.readline()
        fields = first.rstrip("\n").split("\t")
        assert fields[1:] == ["insert", "d", "1"], first
        copy.send_signal(signal.SIGINT)
        _, err = copy.communicate(timeout=10)
        assert "canceling statement due to user request" in err, err
        wait_for(lambda: subscribers(writer, "sub_v") == 0, "the cancelled subscription to go")

        # Killing psql outright: the server notices the closed connection.
        copy = subprocess.Popen(
            psql + ["-c", "COPY (SUBSCRIBE sub_v) TO STDOUT"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        snapshot = [copy.stdout.readline() for _ in range(3)]
        assert sorted(line.split("\t", 2)[2] for line in snapshot) == ["a\t1\n", "c\t1\n", "d\t1\n"], snapshot
        copy.kill()
        copy.wait()
        wait_for(lambda: subscribers(writer, "sub_v") == 0, "the killed client's subscription to go")

        writer.execute("DROP MATERIALIZED VIEW sub_v")
        writer.execute("DROP TABLE sub_t")
    print("subscribe checks passed")


if __name__ == "__main__":
    main()
