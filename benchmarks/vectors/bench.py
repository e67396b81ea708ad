"""Exact vector distance scans and top-k searches: Sluice vs DuckDB (and
numpy for the search), side by side.

Writes N random float32 vectors of dimension D (fixed seed) to one Parquet
file; Sluice loads it into a durable table (Parquet files in its data
directory), DuckDB into its in-memory table. Then the same scan is timed in
each: the minimum cosine (and L2) distance to a query vector over all rows
— every row's distance is computed, one value comes back, so the time is
the scan's and the kernel's, not the client's. DuckDB is also timed reading
the same Parquet file in every query, the like-for-like peer of Sluice's
Parquet-backed table. Both engines run with 2 threads. Prints rows/s and
the ratios sluice/duckdb (higher is better for Sluice); both sides run in
one process so they share machine noise. Then the k nearest rows by cosine
distance: Sluice's `VECTOR_SEARCH`, DuckDB's `ORDER BY distance LIMIT k`,
FAISS `IndexFlatIP` and numpy over the vectors in memory, for one query and
for a batch; Sluice, DuckDB and numpy must return the same ids.
"""

import argparse
import os
import statistics
import sys
import time

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq


def write_vectors(path, rows, dim, seed):
    rng = np.random.default_rng(seed)
    batch = 100_000
    schema = pa.schema([("id", pa.int64()), ("v", pa.list_(pa.float32(), dim))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            values = rng.standard_normal(n * dim, dtype=np.float32)
            v = pa.FixedSizeListArray.from_arrays(pa.array(values), dim)
            ids = pa.array(np.arange(start, start + n, dtype=np.int64))
            writer.write_table(pa.table({"id": ids, "v": v}, schema=schema))
    return rng.standard_normal(dim, dtype=np.float32)


def timed(run, repeats):
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--port", type=int, default=5497)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--work", default="/tmp/sluice-vector-bench")
    args = parser.parse_args()

    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, f"vectors_{args.rows}_{args.dim}.parquet")
    query = write_vectors(path, args.rows, args.dim, seed=42)
    q_text = "[" + ",".join(repr(float(x)) for x in query) + "]"

    duck = duckdb.connect()
    duck.execute("SET threads = 2")
    duck.execute(f"CREATE TABLE t AS SELECT id, v::FLOAT[{args.dim}] AS v FROM read_parquet('{path}')")
    q_duck = f"{q_text}::FLOAT[{args.dim}]"

    sluice = psycopg.connect(host="127.0.0.1", port=args.port, user="sluice", dbname="sluice", autocommit=True)
    sluice.execute(f"CREATE EXTERNAL TABLE vectors_file STORED AS PARQUET LOCATION '{path}'")
    sluice.execute("CREATE TABLE t AS SELECT id, v FROM vectors_file")
    q_sluice = f"'{q_text}'"

    print(f"# exact distance scan, {args.rows} rows x {args.dim} dims, median of {args.repeats}")
    print("# sluice reads its durable table t (Parquet files); duckdb reads its in-memory")
    print("# table (duckdb_memory) or the same Parquet file each query (duckdb_parquet)")
    print(f"{'metric':8} {'duckdb_memory':>14} {'duckdb_parquet':>14} {'sluice_rows_s':>14}"
          f" {'vs_memory':>9} {'vs_parquet':>10}")
    failed = False
    for metric, duck_fn, sluice_fn in [
        ("cosine", "array_cosine_distance", "cosine_distance"),
        ("l2", "array_distance", "l2_distance"),
    ]:
        d_time, d_val = timed(
            lambda: duck.execute(f"SELECT min({duck_fn}(v, {q_duck})) FROM t").fetchone()[0],
            args.repeats,
        )
        p_time, p_val = timed(
            lambda: duck.execute(
                f"SELECT min({duck_fn}(v::FLOAT[{args.dim}], {q_duck})) FROM read_parquet('{path}')"
            ).fetchone()[0],
            args.repeats,
        )
        s_time, s_val = timed(
            lambda: sluice.execute(f"SELECT min({sluice_fn}(v, {q_sluice})) FROM t").fetchone()[0],
            args.repeats,
        )
        # Same data, same query: the answers must agree (float32 sums).
        for name, value in [("duckdb parquet", p_val), ("sluice", s_val)]:
            if abs(d_val - value) > 1e-3 * max(1.0, abs(d_val)):
                print(f"MISMATCH {metric}: duckdb {d_val} {name} {value}", file=sys.stderr)
                failed = True
        d_rate, p_rate, s_rate = args.rows / d_time, args.rows / p_time, args.rows / s_time
        print(f"{metric:8} {d_rate:14.0f} {p_rate:14.0f} {s_rate:14.0f}"
              f" {s_rate / d_rate:9.2f} {s_rate / p_rate:10.2f}")
    failed |= top_k(args, duck, sluice, q_duck, q_sluice, query, path)
    sys.exit(1 if failed else 0)


def top_k(args, duck, sluice, q_duck, q_sluice, query, path):
    """Exact top-k search by cosine distance: Sluice's VECTOR_SEARCH (the
    first search, which decodes the vector column, and then warm) vs
    DuckDB's ORDER BY distance LIMIT k (in-memory table), FAISS IndexFlatIP
    over the normalised vectors, and numpy over the vectors held in memory
    (what a Python user would write). Then a batch of queries: FAISS and
    numpy search the whole batch at once, and so does Sluice (a LATERAL
    VECTOR_SEARCH over a table of the queries; also timed one query after
    the other). The ids must agree with numpy's."""
    import faiss

    faiss.omp_set_num_threads(2)
    k = args.k
    table = pq.read_table(path)
    ids = table.column("id").to_numpy()
    vectors = np.stack(table.column("v").to_numpy(zero_copy_only=False)).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(vectors / norms[:, None])

    def numpy_top_k(q):
        cosine = 1.0 - (vectors @ q) / (norms * np.linalg.norm(q))
        nearest = np.argpartition(cosine, k)[:k]
        return [int(ids[i]) for i in nearest[np.argsort(cosine[nearest])]]

    def faiss_top_k(q):
        _, found = flat.search((q / np.linalg.norm(q))[None, :], k)
        return [int(ids[i]) for i in found[0]]

    def sluice_top_k(q_text):
        rows = sluice.execute(
            f"SELECT id FROM VECTOR_SEARCH(TABLE t, DESCRIPTOR(v), {q_text}, {k}) ORDER BY score"
        ).fetchall()
        return [r[0] for r in rows]

    start = time.perf_counter()
    sluice_top_k(q_sluice)
    s_cold = time.perf_counter() - start
    n_time, n_ids = timed(lambda: numpy_top_k(query), args.repeats)
    f_time, f_ids = timed(lambda: faiss_top_k(query), args.repeats)
    d_time, d_rows = timed(
        lambda: duck.execute(
            f"SELECT id FROM t ORDER BY array_cosine_distance(v, {q_duck}) LIMIT {k}"
        ).fetchall(),
        args.repeats,
    )
    s_time, s_ids = timed(lambda: sluice_top_k(q_sluice), args.repeats)
    d_ids = [r[0] for r in d_rows]
    print(f"# exact top-{k} search (cosine), one query, {args.rows} rows x {args.dim} dims, median of {args.repeats}")
    print(f"{'engine':14} {'ms':>10} {'sluice_speedup':>15}")
    for name, seconds in [
        ("numpy", n_time),
        ("faiss_flat", f_time),
        ("duckdb", d_time),
        ("sluice_first", s_cold),
        ("sluice", s_time),
    ]:
        print(f"{name:14} {seconds * 1000:10.1f} {seconds / s_time:15.2f}")
    failed = False
    if set(s_ids) != set(n_ids) or set(d_ids) != set(n_ids):
        print(f"MISMATCH top-{k}: numpy {n_ids} duckdb {d_ids} sluice {s_ids}", file=sys.stderr)
        failed = True
    if set(f_ids) != set(n_ids):
        print(f"# faiss (float32 on normalised vectors) differs: {f_ids} vs {n_ids}")

    rng = np.random.default_rng(7)
    batch = rng.standard_normal((args.batch, args.dim), dtype=np.float32)
    texts = ["'[" + ",".join(repr(float(x)) for x in q) + "]'" for q in batch]
    start = time.perf_counter()
    numpy_ids = [numpy_top_k(q) for q in batch]
    n_batch = time.perf_counter() - start
    start = time.perf_counter()
    flat.search(batch / np.linalg.norm(batch, axis=1)[:, None], k)
    f_batch = time.perf_counter() - start
    start = time.perf_counter()
    one_by_one = [sluice_top_k(t) for t in texts]
    s_single = time.perf_counter() - start
    sluice.execute(f"CREATE TABLE queries (qid INT, qv VECTOR({args.dim}))")
    sluice.execute(
        "INSERT INTO queries VALUES "
        + ", ".join(f"({i}, {t})" for i, t in enumerate(texts))
    )
    lateral = (
        "SELECT q.qid, s.id FROM queries q, "
        f"LATERAL TABLE(VECTOR_SEARCH(TABLE t, q.qv, DESCRIPTOR(v), {k})) AS s"
    )
    start = time.perf_counter()
    rows = sluice.execute(lateral).fetchall()
    s_batch = time.perf_counter() - start
    sluice_ids = [[] for _ in texts]
    for qid, found in rows:
        sluice_ids[qid].append(found)
    print(f"# a batch of {args.batch} queries: ms per query")
    print(f"{'engine':14} {'ms/query':>10} {'sluice_speedup':>15}")
    for name, seconds in [
        ("numpy", n_batch),
        ("faiss_flat", f_batch),
        ("sluice_single", s_single),
        ("sluice", s_batch),
    ]:
        print(f"{name:14} {seconds * 1000 / args.batch:10.2f} {seconds / s_batch:15.2f}")
    wrong = sum(set(a) != set(b) for a, b in zip(one_by_one, numpy_ids))
    if wrong:
        print(f"MISMATCH: {wrong} of {args.batch} single searches differ from numpy", file=sys.stderr)
        failed = True
    wrong = sum(set(a) != set(b) for a, b in zip(sluice_ids, numpy_ids))
    if wrong:
        print(f"MISMATCH: {wrong} of {args.batch} batch searches differ from numpy", file=sys.stderr)
        failed = True
    else:
        print(f"# the same {k} ids as numpy for all {args.batch} queries")
    return failed


if __name__ == "__main__":
    main()
