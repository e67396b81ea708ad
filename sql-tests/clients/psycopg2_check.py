"""psycopg2 against a running `sluice serve`: parameters interpolated on the
client (simple query protocol), executemany, execute_values, COPY both ways
with copy_expert, errors with pgcode, transactions, and pgvector's psycopg2
adapter.

Usage: python psycopg2_check.py HOST PORT
Exits non-zero on the first failed check.
"""
import datetime
import io
import sys

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2.extras import execute_values


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    conn = psycopg2.connect(host=host, port=port, user="sluice", dbname="sluice")
    try:
        assert conn.server_version // 10000 == 15, conn.server_version
        conn.autocommit = True
        check_params(conn)
        check_copy(conn)
        check_errors(conn)
        conn.autocommit = False
        check_transactions(conn)
    finally:
        conn.close()
    check_pgvector(host, port)
    print("psycopg2 checks passed")


AT = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)


def sample(i):
    return (i, f"it's #{i}", i * 0.5, i % 2 == 0, datetime.date(2024, 2, i), AT + datetime.timedelta(hours=i), bytes([0, 255, i]))


def check_params(conn):
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE pg2_check (id BIGINT, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, day DATE, "
        "at TIMESTAMP, raw BYTEA)"
    )
    cur.execute("INSERT INTO pg2_check VALUES (%s, %s, %s, %s, %s, %s, %s)", sample(1))
    assert cur.rowcount == 1, cur.rowcount
    cur.executemany("INSERT INTO pg2_check VALUES (%s, %s, %s, %s, %s, %s, %s)", [sample(i) for i in (2, 3)])
    assert cur.rowcount == 2, cur.rowcount
    # Named parameters, a quote inside a string, bytes as an escaped literal.
    cur.execute(
        "INSERT INTO pg2_check VALUES (%(id)s, %(name)s, %(score)s, %(ok)s, %(day)s, %(at)s, %(raw)s)",
        dict(zip(["id", "name", "score", "ok", "day", "at", "raw"], sample(4))),
    )
    execute_values(cur, "INSERT INTO pg2_check VALUES %s", [sample(i) for i in range(5, 10)], page_size=2)
    cur.execute("SELECT id, name, score, ok, day, at, raw FROM pg2_check ORDER BY id")
    rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur.fetchall()]
    assert rows == [sample(i) for i in range(1, 10)], rows
    assert [d.name for d in cur.description] == ["id", "name", "score", "ok", "day", "at", "raw"], cur.description
    cur.execute("SELECT name FROM pg2_check WHERE id = %s AND name LIKE %s", (3, "it''s%"))
    assert cur.fetchall() == [], "a doubled quote in a LIKE pattern is two quotes"
    cur.execute("SELECT name FROM pg2_check WHERE id = %s AND name LIKE %s", (3, "it's%"))
    assert cur.fetchone() == ("it's #3",)
    cur.execute("SELECT count(*) FROM pg2_check WHERE id IN %s AND ok = %s", ((2, 3, 4, 5), True))
    assert cur.fetchone() == (2,)
    cur.execute("SELECT id FROM pg2_check WHERE day > %s AND at < %s ORDER BY id", (datetime.date(2024, 2, 7), AT + datetime.timedelta(hours=9)))
    assert cur.fetchall() == [(8,)]
    # execute_values with fetch: a VALUES list used as a relation.
    got = execute_values(
        cur,
        "SELECT v.id, p.name FROM (VALUES %s) AS v (id, tag) JOIN pg2_check p ON p.id = v.id ORDER BY v.id",
        [(2, "a"), (7, "b")],
        fetch=True,
    )
    assert got == [(2, "it's #2"), (7, "it's #7")], got
    cur.execute("INSERT INTO pg2_check (id, name) VALUES (%s, %s)", (10, None))
    cur.execute("SELECT name IS NULL, raw IS NULL FROM pg2_check WHERE id = 10")
    assert cur.fetchone() == (True, True)
    cur.execute("DELETE FROM pg2_check WHERE id = %s", (10,))
    assert cur.rowcount == 1, cur.rowcount
    cur.execute("UPDATE pg2_check SET score = score * %s WHERE id <= %s", (2, 2))
    assert cur.rowcount == 2, cur.rowcount
    cur.execute("SELECT score FROM pg2_check WHERE id <= 2 ORDER BY id")
    assert cur.fetchall() == [(1.0,), (2.0,)]


def check_copy(conn):
    cur = conn.cursor()
    cur.execute("CREATE TABLE pg2_copy (id BIGINT, name TEXT, ok BOOLEAN, day DATE, raw BYTEA)")
    csv_in = (
        "id,name,ok,day,raw\n"
        "1,plain,true,2024-03-01,\\x00ff\n"
        '2,"comma, and ""quotes""",false,2024-03-02,\n'
        '3,"",,,\\x41\n'
    )
    cur.copy_expert("COPY pg2_copy FROM STDIN WITH (FORMAT csv, HEADER true)", io.StringIO(csv_in))
    assert cur.rowcount == 3, cur.rowcount
    cur.execute("SELECT id, name, ok, day, raw FROM pg2_copy ORDER BY id")
    rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur.fetchall()]
    assert rows == [
        (1, "plain", True, datetime.date(2024, 3, 1), b"\x00\xff"),
        (2, 'comma, and "quotes"', False, datetime.date(2024, 3, 2), None),
        (3, "", None, None, b"A"),
    ], rows
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT id, name FROM pg2_copy WHERE id > 1 ORDER BY id) TO STDOUT", out)
    assert out.getvalue() == '2\tcomma, and "quotes"\n3\t\n', repr(out.getvalue())
    out = io.StringIO()
    cur.copy_expert("COPY pg2_copy TO STDOUT WITH (FORMAT csv, HEADER true)", out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "id,name,ok,day,raw", lines
    assert sorted(lines[1:]) == [
        "1,plain,t,2024-03-01,\\x00ff",
        '2,"comma, and ""quotes""",f,2024-03-02,',
        '3,"",,,\\x41',  # an empty string is quoted: unquoted would be NULL
    ], lines
    # The CSV copied out loads back into another table, equal.
    cur.execute("CREATE TABLE pg2_copy_back (id BIGINT, name TEXT, ok BOOLEAN, day DATE, raw BYTEA)")
    out = io.StringIO()
    cur.copy_expert("COPY pg2_copy TO STDOUT (FORMAT csv)", out)
    out.seek(0)
    cur.copy_expert("COPY pg2_copy_back FROM STDIN (FORMAT csv)", out)
    cur.execute("SELECT count(*) FROM pg2_copy_back")
    assert cur.fetchone() == (3,)
    cur.execute(
        "SELECT count(*) FROM pg2_copy a JOIN pg2_copy_back b ON a.id = b.id "
        "WHERE a.name = b.name AND (a.ok IS NOT DISTINCT FROM b.ok) AND (a.day IS NOT DISTINCT FROM b.day) "
        "AND (a.raw IS NOT DISTINCT FROM b.raw)"
    )
    assert cur.fetchone() == (3,)
    # copy_from / copy_to, psycopg2's text-format helpers.
    cur.copy_from(io.StringIO("4\ttab\\there\n5\t\\N\n"), "pg2_copy", columns=("id", "name"))
    out = io.StringIO()
    cur.copy_to(out, "pg2_copy", columns=("id", "name"))
    assert "4\ttab\\there\n" in out.getvalue() and "5\t\\N\n" in out.getvalue(), out.getvalue()
    # A malformed row fails the COPY and the connection stays usable.
    try:
        cur.copy_expert("COPY pg2_copy (id) FROM STDIN (FORMAT csv)", io.StringIO("6\nnot-a-number\n"))
        raise AssertionError("expected an error")
    except psycopg2.errors.InvalidTextRepresentation as e:
        assert e.pgcode == "22P02", e.pgcode
    cur.execute("SELECT count(*) FROM pg2_copy")
    assert cur.fetchone() == (5,)


def check_errors(conn):
    cur = conn.cursor()
    try:
        cur.execute("SELECT * FROM pg2_missing")
        raise AssertionError("expected an error")
    except psycopg2.errors.UndefinedTable as e:
        assert e.pgcode == "42P01", e.pgcode
        assert e.diag.sqlstate == "42P01" and "pg2_missing" in e.diag.message_primary, e.diag.message_primary
    try:
        cur.execute("SELECT no_such_column FROM pg2_check")
        raise AssertionError("expected an error")
    except psycopg2.errors.UndefinedColumn as e:
        assert e.pgcode == "42703", e.pgcode
    try:
        cur.execute("SELECT 1 / %s", (0,))
        raise AssertionError("expected an error")
    except psycopg2.errors.DivisionByZero as e:
        assert e.pgcode == "22012", e.pgcode
    try:
        cur.execute("SELEC 1")
        raise AssertionError("expected an error")
    except psycopg2.errors.SyntaxError as e:
        assert e.pgcode == "42601", e.pgcode
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)


def check_transactions(conn):
    """psycopg2 opens a transaction (BEGIN) before the first statement when
    autocommit is off."""
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM pg2_check")
    assert cur.fetchone() == (9,)
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    conn.commit()
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    # A failed statement aborts the transaction; later statements are refused
    # until rollback, after which the connection works again.
    cur.execute("SELECT 1")
    try:
        cur.execute("SELECT * FROM pg2_missing")
        raise AssertionError("expected an error")
    except psycopg2.errors.UndefinedTable:
        pass
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    try:
        cur.execute("SELECT 1")
        raise AssertionError("expected an error")
    except psycopg2.errors.InFailedSqlTransaction as e:
        assert e.pgcode == "25P02", e.pgcode
    conn.rollback()
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    cur.execute("SELECT max(id) FROM pg2_check")
    assert cur.fetchone() == (9,)
    conn.commit()
    # A write commits (Sluice writes commit as each statement runs; the
    # commit must succeed).
    cur.execute("INSERT INTO pg2_check (id, name) VALUES (%s, %s)", (11, "eleven"))
    conn.commit()
    cur.execute("SELECT name FROM pg2_check WHERE id = 11")
    assert cur.fetchone() == ("eleven",)
    conn.commit()
    with conn:
        with conn.cursor() as c:
            c.execute("DELETE FROM pg2_check WHERE id = 11")
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def check_pgvector(host, port):
    """pgvector's psycopg2 adapter: it finds `vector` in pg_type, sends
    vectors as text literals and parses them from text."""
    import numpy as np
    from pgvector.psycopg2 import register_vector

    conn = psycopg2.connect(host=host, port=port, user="sluice", dbname="sluice")
    conn.autocommit = True
    try:
        # The defaults: arrays=True looks `_vector` up too.
        register_vector(conn)
        cur = conn.cursor()
        cur.execute("CREATE TABLE pg2_vectors (id BIGINT, v VECTOR(3))")
        cur.execute("INSERT INTO pg2_vectors VALUES (%s, %s)", (1, np.array([1.0, 2.0, 3.0])))
        execute_values(
            cur, "INSERT INTO pg2_vectors VALUES %s", [(2, np.array([4.0, 5.0, 6.5])), (3, np.array([-1.0, 0.0, 0.25]))]
        )
        cur.execute("SELECT id, v FROM pg2_vectors ORDER BY id")
        rows = cur.fetchall()
        assert [r[0] for r in rows] == [1, 2, 3], rows
        assert isinstance(rows[0][1], np.ndarray), rows
        assert np.array_equal(rows[1][1], np.array([4.0, 5.0, 6.5], dtype=np.float32)), rows
        assert np.array_equal(rows[2][1], np.array([-1.0, 0.0, 0.25], dtype=np.float32)), rows
        cur.execute("SELECT id FROM pg2_vectors ORDER BY v <-> %s LIMIT 2", (np.array([4.0, 5.0, 6.0]),))
        assert cur.fetchall() == [(2,), (1,)]
        cur.copy_expert("COPY pg2_vectors FROM STDIN (FORMAT csv)", io.StringIO('4,"[0.5,-1,2]"\n'))
        cur.execute("SELECT v FROM pg2_vectors WHERE id = 4")
        assert np.array_equal(cur.fetchone()[0], np.array([0.5, -1.0, 2.0], dtype=np.float32))
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT id, v FROM pg2_vectors WHERE id = 4) TO STDOUT (FORMAT csv)", out)
        assert out.getvalue() == '4,"[0.5,-1,2]"\n', repr(out.getvalue())
        try:
            cur.execute("INSERT INTO pg2_vectors VALUES (%s, %s)", (5, np.array([1.0, 2.0])))
            raise AssertionError("expected a dimension error")
        except psycopg2.DataError as e:
            assert e.pgcode.startswith("22") and "expected 3 dimensions, not 2" in str(e), (e.pgcode, e)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
