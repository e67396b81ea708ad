"""asyncpg against a running `sluice serve`: the binary protocol throughout
(asyncpg binds and reads every value in binary form), prepared statements,
fetch/fetchrow/fetchval, executemany, COPY in and out, errors with SQLSTATE,
transactions, and pgvector's asyncpg codec.

Usage: python asyncpg_check.py HOST PORT
Exits non-zero on the first failed check.
"""
import asyncio
import datetime
import io
import sys

import asyncpg


async def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    conn = await asyncpg.connect(host=host, port=port, user="sluice", database="sluice")
    try:
        assert conn.get_server_version().major == 15, conn.get_server_version()
        await check_types_and_prepare(conn)
        await check_arrays(conn)
        await check_copy(conn)
        await check_errors_and_transactions(conn)
    finally:
        await conn.close()
    await check_pgvector(host, port)
    print("asyncpg checks passed")


AT = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)


def sample(i):
    return (
        i,
        i * 1_000_000_000_000,
        i * 0.25,
        f"name-{i}",
        i % 2 == 0,
        datetime.date(2024, 1, i),
        AT + datetime.timedelta(days=i),
        bytes([0, 255, i]),
    )


async def check_types_and_prepare(conn):
    await conn.execute(
        "CREATE TABLE apg_check (i INT, b BIGINT, f DOUBLE PRECISION, t TEXT, ok BOOLEAN, "
        "day DATE, at TIMESTAMP, raw BYTEA)"
    )
    insert = "INSERT INTO apg_check VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    status = await conn.execute(insert, *sample(1))
    assert status == "INSERT 0 1", status
    await conn.executemany(insert, [sample(i) for i in range(2, 6)])
    rows = await conn.fetch("SELECT i, b, f, t, ok, day, at, raw FROM apg_check ORDER BY i")
    assert [tuple(r) for r in rows] == [sample(i) for i in range(1, 6)], rows
    # Record access by name, and each value's Python type as asyncpg decodes it.
    row = await conn.fetchrow("SELECT i, b, f, t, ok, day, at, raw FROM apg_check WHERE i = $1", 3)
    assert row["t"] == "name-3" and row["raw"] == b"\x00\xff\x03", row
    assert [type(v) for v in row.values()] == [
        int, int, float, str, bool, datetime.date, datetime.datetime, bytes
    ], row
    assert await conn.fetchrow("SELECT i FROM apg_check WHERE i = $1", 99) is None
    assert await conn.fetchval("SELECT count(*) FROM apg_check") == 5
    assert await conn.fetchval("SELECT sum(b) FROM apg_check WHERE ok = $1", True) == 6_000_000_000_000
    assert await conn.fetchval("SELECT t FROM apg_check WHERE at > $1 ORDER BY at LIMIT 1", AT + datetime.timedelta(days=4)) == "name-5"
    # NULLs bound and read back in every column.
    await conn.execute(insert, 6, None, None, None, None, None, None, None)
    assert tuple(await conn.fetchrow("SELECT b, f, t, ok, day, at, raw FROM apg_check WHERE i = 6")) == (None,) * 7
    # A prepared statement: parameter and result types described once, then
    # executed many times with different values.
    stmt = await conn.prepare("SELECT t, raw FROM apg_check WHERE i = $1")
    assert [p.name for p in stmt.get_parameters()] == ["int4"], stmt.get_parameters()
    assert [(a.name, a.type.name) for a in stmt.get_attributes()] == [("t", "text"), ("raw", "bytea")], stmt.get_attributes()
    for i in range(1, 6):
        assert tuple(await stmt.fetchrow(i)) == (f"name-{i}", bytes([0, 255, i])), i
    assert await stmt.fetchval(4) == "name-4"
    assert await stmt.fetch(42) == []
    ranged = await conn.prepare("SELECT i FROM apg_check WHERE day BETWEEN $1 AND $2 ORDER BY i")
    for lo, hi, want in [(1, 2, [1, 2]), (3, 5, [3, 4, 5]), (5, 1, [])]:
        got = [r["i"] for r in await ranged.fetch(datetime.date(2024, 1, lo), datetime.date(2024, 1, hi))]
        assert got == want, (lo, hi, got)
    # A cursor over a prepared statement inside a transaction (portal fetched
    # in parts).
    async with conn.transaction():
        seen = [r["i"] async for r in conn.cursor("SELECT i FROM apg_check WHERE i <= 5 ORDER BY i", prefetch=2)]
    assert seen == [1, 2, 3, 4, 5], seen
    await conn.execute("DELETE FROM apg_check WHERE i = 6")


async def check_arrays(conn):
    # asyncpg decodes only oid[] and text[] arrays on its own; for any other
    # it introspects the type with a recursive catalog query. That query
    # binds $1::oid[], reads array_agg(atttypid) as oid[] (as int4[], asyncpg
    # introspected int4[] again, without end), computes columns with
    # correlated subqueries inside CASE and reads elemtype::regtype::text.
    assert await conn.fetchval("SELECT ARRAY[1, 2, 3]") == [1, 2, 3]
    assert await conn.fetchval("SELECT $1::int4[]", [4, None, 6]) == [4, None, 6]
    assert await conn.fetchval("SELECT $1::int8[]", [2**40, -1]) == [2**40, -1]
    assert await conn.fetchval("SELECT $1::float8[]", [0.5, -2.25]) == [0.5, -2.25]
    assert await conn.fetchval("SELECT ARRAY['a', NULL]") == ["a", None]
    await conn.execute("CREATE TABLE apg_arrays (id INT, tags BIGINT[])")
    await conn.executemany("INSERT INTO apg_arrays VALUES ($1, $2)", [(1, [10, 20]), (2, []), (3, None)])
    rows = await conn.fetch("SELECT id, tags FROM apg_arrays ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, [10, 20]), (2, []), (3, None)], rows
    # The introspection query's own oid[] column, as Postgres types it.
    stmt = await conn.prepare("SELECT array_agg(atttypid) AS oids FROM pg_catalog.pg_attribute")
    assert [a.type.oid for a in stmt.get_attributes()] == [1028], stmt.get_attributes()
    oids = await stmt.fetchval()
    assert oids and all(isinstance(o, int) and o > 0 for o in oids), oids
    assert await conn.fetchval("SELECT $1::oid[]", [23, 1007]) == [23, 1007]
    # regtype's output is the type's name, '-' for none.
    names = await conn.fetch(
        "SELECT typelem::regtype::text AS e FROM pg_type WHERE oid = ANY($1::oid[]) ORDER BY oid", [23, 1007]
    )
    assert [r["e"] for r in names] == ["-", "integer"], names


async def check_copy(conn):
    await conn.execute(
        "CREATE TABLE apg_copy (i INT, b BIGINT, f DOUBLE PRECISION, t TEXT, ok BOOLEAN, "
        "day DATE, at TIMESTAMP, raw BYTEA)"
    )
    # asyncpg writes records as binary COPY.
    records = [sample(i) for i in range(1, 4)] + [(4, None, None, "tab\there, \"q\"", None, None, None, None)]
    status = await conn.copy_records_to_table("apg_copy", records=records)
    assert status == "COPY 4", status
    rows = await conn.fetch("SELECT * FROM apg_copy ORDER BY i")
    assert [tuple(r) for r in rows] == records, rows
    # A subset of the columns.
    status = await conn.copy_records_to_table("apg_copy", records=[(5, "five")], columns=["i", "t"])
    assert status == "COPY 1", status
    assert await conn.fetchval("SELECT t FROM apg_copy WHERE i = 5 AND b IS NULL") == "five"
    # COPY out of a query, text and CSV, into a file-like object.
    out = io.BytesIO()
    status = await conn.copy_from_query("SELECT i, t, ok FROM apg_copy WHERE i >= 2 AND i <= 4 ORDER BY i", output=out)
    assert status == "COPY 3", status
    assert out.getvalue().decode() == "2\tname-2\tt\n3\tname-3\tf\n4\ttab\\there, \"q\"\t\\N\n", out.getvalue()
    out = io.BytesIO()
    await conn.copy_from_query(
        "SELECT i, t FROM apg_copy WHERE i IN (1, 4) ORDER BY i", output=out, format="csv", header=True
    )
    assert out.getvalue().decode() == 'i,t\n1,name-1\n4,"tab\there, ""q"""\n', out.getvalue()
    # With arguments: asyncpg quotes each with the server's quote_literal.
    out = io.BytesIO()
    status = await conn.copy_from_query(
        "SELECT i, t FROM apg_copy WHERE i = $1 OR t = $2 ORDER BY i", 2, "name-3", output=out
    )
    assert status == "COPY 2", status
    assert out.getvalue().decode() == "2\tname-2\n3\tname-3\n", out.getvalue()
    # A whole table out, and the same text read back in by COPY FROM.
    out = io.BytesIO()
    status = await conn.copy_from_table("apg_copy", output=out, columns=["i", "t", "raw"])
    assert status == "COPY 5", status
    lines = sorted(out.getvalue().decode().splitlines())
    assert lines[0] == "1\tname-1\t\\\\x00ff01", lines
    await conn.execute("CREATE TABLE apg_copy_back (i INT, t TEXT, raw BYTEA)")
    status = await conn.copy_to_table("apg_copy_back", source=io.BytesIO(out.getvalue()))
    assert status == "COPY 5", status
    back = await conn.fetch("SELECT i, t, raw FROM apg_copy_back ORDER BY i")
    want = await conn.fetch("SELECT i, t, raw FROM apg_copy ORDER BY i")
    assert [tuple(r) for r in back] == [tuple(r) for r in want], back


async def check_errors_and_transactions(conn):
    try:
        await conn.fetch("SELECT * FROM apg_missing")
        raise AssertionError("expected an error")
    except asyncpg.exceptions.UndefinedTableError as e:
        assert e.sqlstate == "42P01", e.sqlstate
    try:
        await conn.fetchval("SELECT 1 / $1::int", 0)
        raise AssertionError("expected an error")
    except asyncpg.exceptions.DivisionByZeroError as e:
        assert e.sqlstate == "22012", e.sqlstate
    try:
        await conn.prepare("SELEC 1")
        raise AssertionError("expected an error")
    except asyncpg.exceptions.PostgresSyntaxError as e:
        assert e.sqlstate == "42601", e.sqlstate
    # The connection still works after those errors.
    assert await conn.fetchval("SELECT 2") == 2
    # A failed statement inside a transaction aborts it; asyncpg rolls back
    # and the connection is usable again.
    try:
        async with conn.transaction():
            assert await conn.fetchval("SELECT count(*) FROM apg_check") == 5
            await conn.fetch("SELECT * FROM apg_missing")
        raise AssertionError("expected an error")
    except asyncpg.exceptions.UndefinedTableError:
        pass
    assert not conn.is_in_transaction()
    assert await conn.fetchval("SELECT count(*) FROM apg_check") == 5
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("SELECT * FROM apg_missing")
        raise AssertionError("expected an error")
    except asyncpg.exceptions.UndefinedTableError:
        pass
    try:
        await conn.fetchval("SELECT 1")
        raise AssertionError("expected an error")
    except asyncpg.exceptions.InFailedSQLTransactionError as e:
        assert e.sqlstate == "25P02", e.sqlstate
    await tr.rollback()
    assert not conn.is_in_transaction()
    assert await conn.fetchval("SELECT 3") == 3
    # A read-only transaction commits normally.
    async with conn.transaction():
        assert await conn.fetchval("SELECT max(i) FROM apg_check") == 5
    assert not conn.is_in_transaction()


async def check_pgvector(host, port):
    """pgvector's asyncpg codec: it looks `vector` up in pg_type and sends and
    reads vectors in pgvector's binary form."""
    import numpy as np
    from pgvector.asyncpg import register_vector

    conn = await asyncpg.connect(host=host, port=port, user="sluice", database="sluice")
    try:
        # Sluice registers `vector` in pg_catalog (Postgres: the schema of
        # CREATE EXTENSION vector, normally public, pgvector's default here).
        await register_vector(conn, schema="pg_catalog")
        await conn.execute("CREATE TABLE apg_vectors (id BIGINT, v VECTOR(3))")
        await conn.executemany(
            "INSERT INTO apg_vectors VALUES ($1, $2)",
            [(1, np.array([1.0, 2.0, 3.0])), (2, np.array([4.0, 5.0, 6.5])), (3, [-1.0, 0.0, 0.5])],
        )
        rows = await conn.fetch("SELECT id, v FROM apg_vectors ORDER BY id")
        assert [r["id"] for r in rows] == [1, 2, 3], rows
        assert np.array_equal(rows[1]["v"], np.array([4.0, 5.0, 6.5], dtype=np.float32)), rows
        assert np.array_equal(rows[2]["v"], np.array([-1.0, 0.0, 0.5], dtype=np.float32)), rows
        nearest = await conn.prepare("SELECT id FROM apg_vectors ORDER BY v <-> $1 LIMIT 2")
        assert [r["id"] for r in await nearest.fetch(np.array([4.0, 5.0, 6.0]))] == [2, 1]
        assert [r["id"] for r in await nearest.fetch(np.array([-1.0, 0.0, 0.0]))] == [3, 1]
        status = await conn.copy_records_to_table("apg_vectors", records=[(4, np.array([0.5, -1.0, 2.0]))])
        assert status == "COPY 1", status
        copied = await conn.fetchval("SELECT v FROM apg_vectors WHERE id = 4")
        assert np.array_equal(copied, np.array([0.5, -1.0, 2.0], dtype=np.float32)), copied
        try:
            await conn.execute("INSERT INTO apg_vectors VALUES ($1, $2)", 5, np.array([1.0, 2.0]))
            raise AssertionError("expected a dimension error")
        except asyncpg.exceptions.DataError as e:
            assert "expected 3 dimensions, not 2" in str(e), e
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
