"""SQLAlchemy 2 (psycopg 3 dialect) against a running `sluice serve`: engine
start-up queries, Core DDL with pgvector's Vector type, the table found by
the inspector, Core inserts and selects, an ORM model in a Session,
nearest-neighbour ordering with pgvector's comparators, and a Session that
stays usable after a failed statement and a rollback.

Usage: python sqlalchemy_check.py HOST PORT
Exits non-zero on the first failed check.
"""
import datetime
import sys

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy import exc
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    # The dialect's defaults: its first connect looks hstore up inside a
    # SAVEPOINT (psycopg's TypeInfo.fetch).
    engine = sa.create_engine(f"postgresql+psycopg://sluice@{host}:{port}/sluice")
    try:
        with engine.connect() as conn:
            assert engine.dialect.server_version_info[0] == 15, engine.dialect.server_version_info
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        check_core(engine)
        check_orm(engine)
    finally:
        engine.dispose()
    print("sqlalchemy checks passed")


def check_core(engine):
    metadata = sa.MetaData()
    docs = sa.Table(
        "sa_docs",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text),
        sa.Column("score", sa.Double),
        sa.Column("published", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("embedding", Vector(3)),
    )
    metadata.create_all(engine)
    # Reflection: the table is listed and found. (Its columns are not
    # reflected here: Inspector.get_columns and MetaData.reflect fail on
    # Sluice's catalog.)
    insp = sa.inspect(engine)
    assert "sa_docs" in insp.get_table_names(), insp.get_table_names()
    assert insp.has_table("sa_docs") and not insp.has_table("sa_nope")
    # Core insert (one row, then several: insertmanyvalues) and select.
    rows = [
        {"id": i, "title": f"doc {i}", "score": i / 4, "published": i % 2 == 1,
         "day": datetime.date(2024, 6, i), "embedding": np.array([i, i * 2, i * 3], dtype=np.float32)}
        for i in range(1, 6)
    ]
    with engine.begin() as conn:
        # An INSERT's rowcount is kept only when asked for (SQLAlchemy).
        result = conn.execution_options(preserve_rowcount=True).execute(sa.insert(docs), rows[0])
        assert result.rowcount == 1, result.rowcount
        conn.execute(sa.insert(docs), rows[1:])
    with engine.connect() as conn:
        got = conn.execute(sa.select(docs).order_by(docs.c.id)).mappings().all()
        assert [r["id"] for r in got] == [1, 2, 3, 4, 5], got
        for want, row in zip(rows, got):
            for key in ("title", "score", "published", "day"):
                assert row[key] == want[key], (key, row, want)
            assert isinstance(row["embedding"], np.ndarray) and np.array_equal(row["embedding"], want["embedding"]), row
        count = conn.execute(
            sa.select(sa.func.count()).select_from(docs).where(docs.c.published, docs.c.score > 0.5)
        ).scalar_one()
        assert count == 2, count
        nearest = conn.execute(
            sa.select(docs.c.id).order_by(docs.c.embedding.l2_distance([2.1, 4.1, 6.1])).limit(2)
        ).scalars().all()
        assert nearest == [2, 3], nearest
        updated = conn.execute(sa.update(docs).where(docs.c.id == 5).values(title="five"))
        assert updated.rowcount == 1, updated.rowcount
        conn.commit()
        assert conn.execute(sa.select(docs.c.title).where(docs.c.id == 5)).scalar_one() == "five"


class Base(DeclarativeBase):
    pass


class Item(Base):
    """Ids are given by the caller (autoincrement=False): an autoincrementing
    integer key is SERIAL in SQLAlchemy's DDL, which Sluice does not take."""

    __tablename__ = "sa_items"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime)
    embedding = mapped_column(Vector(3))


def check_orm(engine):
    Base.metadata.create_all(engine)
    at = datetime.datetime(2024, 7, 1, 12, 30, 15, 250000)
    vectors = {1: [1.0, 0.0, 0.0], 2: [0.0, 1.0, 0.0], 3: [0.7, 0.7, 0.0], 4: [-1.0, 0.0, 0.0]}
    with Session(engine) as session:
        session.add(Item(id=1, name="x-axis", created=at, embedding=vectors[1]))
        session.add_all([
            Item(id=i, name=n, created=at + datetime.timedelta(minutes=i), embedding=vectors[i])
            for i, n in [(2, "y-axis"), (3, "diagonal"), (4, "minus-x")]
        ])
        session.commit()
    with Session(engine) as session:
        items = session.scalars(sa.select(Item).order_by(Item.id)).all()
        assert [i.name for i in items] == ["x-axis", "y-axis", "diagonal", "minus-x"], items
        assert items[0].created == at and items[2].created == at + datetime.timedelta(minutes=3), items
        assert np.array_equal(items[2].embedding, np.array(vectors[3], dtype=np.float32)), items[2].embedding
        got = session.get(Item, 2)
        assert got is not None and got.name == "y-axis"
        by_l2 = session.scalars(sa.select(Item.id).order_by(Item.embedding.l2_distance([0.9, 0.1, 0.0])).limit(2)).all()
        assert by_l2 == [1, 3], by_l2
        by_cos = session.scalars(sa.select(Item.name).order_by(Item.embedding.cosine_distance([1.0, 1.0, 0.0])).limit(1)).all()
        assert by_cos == ["diagonal"], by_cos
        distance = Item.embedding.l2_distance([0.0, 0.0, 0.0]).label("d")
        rows = session.execute(sa.select(Item.id, distance).where(Item.id.in_([1, 4])).order_by(Item.id)).all()
        assert [(r.id, round(r.d, 6)) for r in rows] == [(1, 1.0), (4, 1.0)], rows
        # Unit of work: an attribute change flushed as an UPDATE, a delete.
        got.name = "Y"
        session.delete(session.get(Item, 4))
        session.commit()
        assert session.scalars(sa.select(Item.name).order_by(Item.id)).all() == ["x-axis", "Y", "diagonal"]
        # A failed statement: the Session must be rolled back, then works again.
        try:
            session.execute(sa.text("SELECT * FROM sa_missing"))
            raise AssertionError("expected an error")
        except exc.ProgrammingError as e:
            assert e.orig.sqlstate == "42P01", e.orig.sqlstate
        try:
            session.execute(sa.text("SELECT 1"))
            raise AssertionError("expected an error")
        except exc.InternalError as e:
            assert e.orig.sqlstate == "25P02", e.orig.sqlstate
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Item)) == 3
        # A flush the server refuses (NULL in a NOT NULL column) leaves the
        # Session's transaction failed; after rollback() it is usable again.
        session.add(Item(id=9, name=None, embedding=[1.0, 2.0, 3.0]))
        try:
            session.commit()
            raise AssertionError("expected an error")
        except exc.IntegrityError as e:
            assert e.orig.sqlstate == "23502", e.orig.sqlstate
        session.rollback()
        assert session.scalars(sa.select(Item.id).order_by(Item.id)).all() == [1, 2, 3]
        session.add(Item(id=5, name="z-axis", embedding=[0.0, 0.0, 1.0]))
        session.commit()
        assert session.scalar(sa.select(Item.name).where(Item.id == 5)) == "z-axis"
        # A nested transaction (SAVEPOINT) whose statement fails is rolled
        # back to its savepoint; the outer transaction goes on and commits.
        nested = session.begin_nested()
        try:
            session.execute(sa.text("SELECT * FROM sa_missing"))
            raise AssertionError("expected an error")
        except exc.ProgrammingError as e:
            assert e.orig.sqlstate == "42P01", e.orig.sqlstate
            nested.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Item)) == 4
        with session.begin_nested():
            session.add(Item(id=6, name="nested", embedding=[0.0, 0.0, -1.0]))
        session.commit()
        assert session.scalar(sa.select(Item.name).where(Item.id == 6)) == "nested"


if __name__ == "__main__":
    main()
