"""The Nexmark tables and queries, in each engine's SQL dialect.

The Flink texts follow the Nexmark suite's Flink SQL (github.com/nexmark/
nexmark, queries q0-q8) with its column names spelled as Sluice's
generator names them (`date_time`, `email_address`, ...). The Sluice texts
are the same queries in Sluice's dialect; where the dialects differ the
difference is noted next to the query, never a change of meaning.
"""

from dataclasses import dataclass, field

# Column lists of the three event kinds, in the order the generator (and so
# the CSV files) lay them out. Types are given per engine below.
COLUMNS = {
    "person": ["id", "name", "email_address", "credit_card", "city", "state",
               "date_time", "extra"],
    "auction": ["id", "item_name", "description", "initial_bid", "reserve",
                "date_time", "expires", "seller", "category", "extra"],
    "bid": ["auction", "bidder", "price", "channel", "url", "date_time", "extra"],
}

_INT = {"id", "initial_bid", "reserve", "seller", "category", "auction",
        "bidder", "price"}
_TIME = {"date_time", "expires"}

# The delay of every table's watermark, seconds (the Nexmark suite's 4 s).
WATERMARK_DELAY_S = 4


def column_type(column: str, engine: str) -> str:
    if column in _INT:
        return "BIGINT"
    if column in _TIME:
        # Flink's event-time attribute must be TIMESTAMP(3); the values
        # are whole milliseconds either way.
        return "TIMESTAMP(3)" if engine == "flink" else "TIMESTAMP"
    return "STRING" if engine == "flink" else "TEXT"


def columns_ddl(table: str, engine: str) -> str:
    cols = [f"{c} {column_type(c, engine)}" for c in COLUMNS[table]]
    cols.append(f"WATERMARK FOR date_time AS date_time - INTERVAL '{WATERMARK_DELAY_S}' SECOND")
    return ", ".join(cols)


@dataclass
class Query:
    name: str
    # Tables the query reads: its input events are their rows.
    tables: list
    flink: str
    sluice: str
    note: str = ""
    # For windowed results: the column holding the window's end. Sluice
    # emits a window once the watermark (max event time - 4 s) passes its
    # end, Flink emits every window when its bounded input ends; only
    # windows that closed on both sides are compared.
    window_end: str | None = None
    # For a query whose rows carry an event time or a window start rather
    # than the window's end: the tumbling window size, ms; the end is then
    # the next multiple of it after `window_end`'s value.
    window_size_ms: int = 0
    # A windowed query whose rows carry no time at all: the windows still
    # open when the input ends cannot be told apart, so results are not
    # compared.
    open_tail: bool = False
    # Whether Sluice is expected to run it as a continuous query (the
    # harness tries the others too and reports Sluice's refusal).
    sluice_continuous: bool = True
    # How many times the query reads each of its tables (a self-join reads
    # its table twice): the rows a complete run takes in, per event.
    reads_each: int = 1
    # Set for a query that is not Nexmark's own: what it is instead.
    variant: str = ""
    # Columns compared rounded to 3 decimals (Flink computes DECIMAL where
    # Sluice computes DOUBLE).
    approx: set = field(default_factory=set)


QUERIES = [
    Query(
        "q0", ["bid"],
        flink="SELECT auction, bidder, price, date_time, extra FROM bid",
        sluice="SELECT auction, bidder, price, date_time, extra FROM bid",
        note="pass-through: the cost of reading the events",
    ),
    Query(
        "q1", ["bid"],
        flink="SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
        sluice="SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
        note="currency conversion (Flink DECIMAL, Sluice DOUBLE; compared to 3 decimals)",
        approx={"price"},
    ),
    Query(
        "q2", ["bid"],
        flink="SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
        # Sluice has no MOD(); `%` is the same for these non-negative ids.
        sluice="SELECT auction, price FROM bid WHERE auction % 123 = 0",
        note="selection",
    ),
    Query(
        "q3", ["person", "auction"],
        flink="""
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')""",
        sluice="""
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')""",
        # The `nexmark` crate behind Sluice's generator spells the states in
        # lower case (the reference generator: 'OR', 'ID', 'CA'), so the
        # suite's literals would select nothing.
        note="local item suggestion (join); state literals in lower case, as generated",
            ),
    Query(
        "q4", ["auction", "bid"],
        flink="""
SELECT Q.category, AVG(Q.final) AS avg_final
FROM (
  SELECT MAX(B.price) AS final, A.category
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.category
) Q
GROUP BY Q.category""",
        # Flink's AVG of a BIGINT is a BIGINT (truncated); Sluice's is a
        # DOUBLE. sum/count of BIGINTs divides as integers in both.
        sluice="""
SELECT Q.category, SUM(Q.final) / COUNT(Q.final) AS avg_final
FROM (
  SELECT MAX(B.price) AS final, A.category
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.category
) Q
GROUP BY Q.category""",
        note="average price per category (join + updating aggregates)",
            ),
    Query(
        "q5", ["bid"],
        flink="""
SELECT AuctionBids.auction, AuctionBids.num
FROM (
  SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
) AS AuctionBids
JOIN (
  SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
  FROM (
    SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
  ) AS CountBids
  GROUP BY CountBids.starttime, CountBids.endtime
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
   AND AuctionBids.num >= MaxBids.maxn""",
        # Sluice writes window table functions without Flink's TABLE(...).
        sluice="""
SELECT AuctionBids.auction, AuctionBids.num
FROM (
  SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
  FROM HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)
  GROUP BY auction, window_start, window_end
) AS AuctionBids
JOIN (
  SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
  FROM (
    SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
    FROM HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY auction, window_start, window_end
  ) AS CountBids
  GROUP BY CountBids.starttime, CountBids.endtime
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
   AND AuctionBids.num >= MaxBids.maxn""",
        note="hot items (join of two HOP aggregates)",
        reads_each=2,
        open_tail=True,
            ),
    Query(
        "q5a", ["bid"],
        flink="""
SELECT auction, count(*) AS num, window_start, window_end
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end""",
        sluice="""
SELECT auction, count(*) AS num, window_start, window_end
FROM HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end""",
        note="VARIANT, not Nexmark: q5's single-table part, bids per auction per HOP window",
        variant="single-table q5",
        window_end="window_end",
    ),
    Query(
        "q7", ["bid"],
        flink="""
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end AS date_time
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time""",
        sluice="""
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end AS date_time
  FROM TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time""",
        note="highest bid per 10 s window (self-join)",
        reads_each=2,
        window_end="date_time",
        window_size_ms=10_000,
            ),
    Query(
        "q8", ["person", "auction"],
        flink="""
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
        sluice="""
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND)
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND)
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
        note="new users who sold in the same 10 s window (join of two TUMBLE aggregates)",
        window_end="starttime",
        window_size_ms=10_000,
            ),
]
