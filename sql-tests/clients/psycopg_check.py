"""psycopg 3 against a running `sluice serve`: server-side parameter binding,
prepared statements, types, errors with SQLSTATE, transactions.

Usage: python psycopg_check.py HOST PORT
Exits non-zero on the first failed check.
"""
import datetime
import sys

import psycopg
from psycopg import errors


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    with psycopg.connect(host=host, port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
        assert conn.info.parameter_status("server_version").startswith("15"), conn.info.parameter_status("server_version")
        assert conn.info.parameter_status("client_encoding") == "UTF8"
        assert conn.info.parameter_status("DateStyle").startswith("ISO")
        cur = conn.cursor()
        cur.execute("CREATE TABLE py_check (id BIGINT, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, day DATE)")
        rows = [(i, f"name-{i}", i * 1.5, i % 2 == 0, datetime.date(2024, 1, i)) for i in range(1, 6)]
        for row in rows:
            cur.execute("INSERT INTO py_check VALUES (%s, %s, %s, %s, %s)", row)
        cur.execute("SELECT id, name, score, ok, day FROM py_check WHERE id = %s", (3,))
        assert cur.fetchall() == [rows[2]], "point query with a parameter"
        # psycopg prepares server-side after repeated use; run it enough times.
        for i in range(1, 6):
            cur.execute("SELECT name FROM py_check WHERE id = %s", (i,), prepare=True)
            assert cur.fetchone() == (f"name-{i}",)
        cur.execute("SELECT count(*), sum(score) FROM py_check WHERE ok = %s AND name LIKE %s", (True, "name-%"))
        assert cur.fetchone() == (2, 9.0)
        cur.execute("SELECT current_user, session_user, user")
        assert cur.fetchone() == ("sluice",) * 3, "the user functions name the login user"
        cur.execute("SELECT version()")
        assert cur.fetchone()[0].startswith("PostgreSQL 15")
        # TIMESTAMPTZ keeps the instant: a parameter with an offset, a
        # literal with one, both read back as the same UTC time.
        cur.execute("CREATE TABLE py_times (id INT, at TIMESTAMPTZ)")
        at = datetime.datetime(2024, 5, 6, 9, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
        cur.execute("INSERT INTO py_times VALUES (1, %s)", (at,))
        cur.execute("INSERT INTO py_times VALUES (2, '2024-05-06 09:08:09+02')")
        cur.execute("SELECT at FROM py_times ORDER BY id")
        assert cur.description[0].type_code == 1184, "timestamptz announced as such"
        assert [r[0] for r in cur.fetchall()] == [at, at], "the same instant both ways"

        try:
            cur.execute("SELECT * FROM missing_table")
            raise AssertionError("expected an error")
        except errors.UndefinedTable:
            pass
        try:
            cur.execute("SELECT 1 / 0")
            raise AssertionError("expected an error")
        except errors.DivisionByZero:
            pass
        # Binary results.
        bcur = conn.cursor(binary=True)
        bcur.execute("SELECT id, name, ok FROM py_check WHERE id = %s", (4,))
        assert bcur.fetchone() == (4, "name-4", True)
        # A query of zero columns still describes its (empty) row, on both
        # protocols, so its rows are rows (pgwire once answered NoData and
        # psycopg then failed on "data without row description").
        for c in (cur, bcur):
            c.execute("SELECT FROM py_check WHERE id <= %s", (3,))
            assert c.description == [] and c.fetchall() == [(), (), ()], c.description
        check_copy_out(cur, rows)
    with psycopg.connect(host=host, port=port, user="sluice", dbname="sluice") as conn:
        with conn.transaction():
            conn.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # ROLLBACK undoes the transaction's writes, silently.
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary)))
        conn.execute("INSERT INTO py_check VALUES (7, 'rolled back', 7.0, true, NULL)")
        assert conn.execute("SELECT count(*) FROM py_check WHERE id = 7").fetchone() == (1,)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM py_check WHERE id = 7").fetchone() == (0,)
        conn.rollback()
        assert notices == [], notices
        # A transaction's writes reach another session at COMMIT, at once.
        with psycopg.connect(host=host, port=port, user="sluice", dbname="sluice", autocommit=True) as other:
            with conn.transaction():
                conn.execute("INSERT INTO py_check VALUES (8, 'committed', 8.0, true, NULL)")
                seen = other.execute("SELECT count(*) FROM py_check WHERE id = 8").fetchone()
                assert seen == (0,), seen
            seen = other.execute("SELECT count(*) FROM py_check WHERE id = 8").fetchone()
            assert seen == (1,), seen
        with conn.transaction():
            conn.execute("DELETE FROM py_check WHERE id = 8")
    check_pgvector_adapter(host, port)
    print("psycopg checks passed")


def check_copy_out(cur, rows):
    """COPY … TO STDOUT in text, CSV (with a header) and binary, read by
    psycopg's copy API; a NULL and a value needing escapes included."""
    cur.execute("INSERT INTO py_check VALUES (6, %s, NULL, NULL, NULL)", ("tab\there, \"quoted\"",))
    with cur.copy("COPY py_check TO STDOUT") as copy:
        text = b"".join(bytes(chunk) for chunk in copy).decode()
    lines = sorted(text.splitlines())
    assert lines[0] == "1\tname-1\t1.5\tf\t2024-01-01", lines
    assert lines[5] == "6\ttab\\there, \"quoted\"\t\\N\t\\N\t\\N", lines
    with cur.copy("COPY (SELECT id, name FROM py_check WHERE id >= 5 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)") as copy:
        csv_text = b"".join(bytes(chunk) for chunk in copy).decode()
    assert csv_text == 'id,name\n5,name-5\n6,"tab\there, ""quoted"""\n', repr(csv_text)
    with cur.copy("COPY (SELECT id, name, score, ok, day FROM py_check ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
        copy.set_types(["int8", "text", "float8", "bool", "date"])
        copied = list(copy.rows())
    assert copied[:5] == rows, copied
    assert copied[5] == (6, "tab\there, \"quoted\"", None, None, None), copied[5]
    assert cur.rowcount == 6, cur.rowcount
    cur.execute("DELETE FROM py_check WHERE id = 6")
    # Binary in: psycopg writes PGCOPY rows; they read back equal.
    cur.execute(
        "CREATE TABLE py_binary_in (id BIGINT, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, day DATE, "
        "at TIMESTAMP, raw BYTEA)"
    )
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    written = [
        (1, "tab\there", 0.25, True, datetime.date(1999, 12, 31), at, b"\x00\xffab"),
        (2, None, None, None, None, None, None),
    ]
    with cur.copy("COPY py_binary_in FROM STDIN (FORMAT binary)") as copy:
        copy.set_types(["int8", "text", "float8", "bool", "date", "timestamp", "bytea"])
        for row in written:
            copy.write_row(row)
    assert cur.rowcount == 2, cur.rowcount
    cur.execute("SELECT id, name, score, ok, day, at, raw FROM py_binary_in ORDER BY id")
    assert cur.fetchall() == written
    # A value of the wrong binary size is refused and nothing is written.
    try:
        with cur.copy("COPY py_binary_in (id) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int4"])
            copy.write_row((3,))
        raise AssertionError("expected an error")
    except errors.InvalidBinaryRepresentation as e:
        assert "expected 8 bytes, got 4" in str(e), e
    cur.execute("SELECT count(*) FROM py_binary_in")
    assert cur.fetchone() == (2,)
    # Text COPY of bytea: Postgres' \x hex form is decoded, not stored as text.
    with cur.copy("COPY py_binary_in (id, raw) FROM STDIN") as copy:
        copy.write_row((3, b"\x01\x02\xfe"))
    cur.execute("SELECT raw FROM py_binary_in WHERE id = 3")
    assert cur.fetchone() == (b"\x01\x02\xfe",)


def check_pgvector_adapter(host, port):
    """pgvector's own psycopg adapter: it finds `vector` in pg_type, then
    sends and reads numpy vectors in text and binary form."""
    import numpy as np
    from pgvector.psycopg import register_vector

    with psycopg.connect(host=host, port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE py_vectors (id BIGINT, v VECTOR(3))")
        conn.execute("INSERT INTO py_vectors VALUES (1, %t)", (np.array([1.0, 2.0, 3.0]),))
        conn.execute("INSERT INTO py_vectors VALUES (2, %b)", (np.array([4.0, 5.0, 6.5]),))
        for binary in (False, True):
            rows = conn.cursor(binary=binary).execute("SELECT id, v FROM py_vectors ORDER BY id").fetchall()
            assert [r[0] for r in rows] == [1, 2], rows
            assert np.array_equal(rows[1][1], np.array([4.0, 5.0, 6.5], dtype=np.float32)), rows
        with conn.cursor().copy("COPY py_vectors (id, v) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int8", "vector"])
            copy.write_row((10, np.array([0.5, -1.0, 2.0])))
        copied = conn.execute("SELECT v FROM py_vectors WHERE id = 10").fetchone()[0]
        assert np.array_equal(copied, np.array([0.5, -1.0, 2.0], dtype=np.float32)), copied
        conn.execute("DELETE FROM py_vectors WHERE id = 10")
        nearest = conn.execute(
            "SELECT id FROM py_vectors ORDER BY v <-> %s LIMIT 1", (np.array([4.0, 5.0, 6.0]),)
        ).fetchone()
        assert nearest == (2,), nearest
        try:
            conn.execute("INSERT INTO py_vectors VALUES (3, %s)", (np.array([1.0, 2.0]),))
            raise AssertionError("expected a dimension error")
        except errors.DataException as e:
            assert "expected 3 dimensions, not 2" in str(e), e


if __name__ == "__main__":
    main()
