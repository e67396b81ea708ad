"""HNSW search through SQL: Sluice's `CREATE INDEX … USING hnsw` vs FAISS
`IndexHNSWFlat` (M=16, efConstruction=64) and LanceDB (an `IVF_HNSW_FLAT`
index with one partition, so one HNSW graph over the raw vectors: m=16,
ef_construction=64, cosine) on the same clustered vectors, side by side in
one process so all share the machine's noise.

For each side: build time, then for several ef_search values the recall@k
against exact search (numpy) and queries per second, one query at a time
(Sluice: `SELECT id FROM t ORDER BY v <=> $1 LIMIT k` over the wire, the
way an application asks; FAISS: `index.search` on one vector; LanceDB:
`table.search(q).ef(ef).nprobes(1).limit(k)` through its synchronous Python
API on a table stored in the work directory). Then filtered searches keeping
10% and 1% of the rows: rows returned (must be k), recall and QPS — FAISS
through an `IDSelectorBatch`, LanceDB through `.where(…, prefilter=True)`
over a BTREE scalar index on `bucket`. Prints ratios sluice/faiss and
sluice/lancedb (QPS: higher is better for Sluice). If LanceDB cannot be
imported or fails, a line says so and its columns are left out (or `-`).
"""

import argparse
import os
import sys
import time

# LanceDB's compute pool, like FAISS's OpenMP threads below: 2 (read when
# lancedb first runs, so before it is imported).
os.environ.setdefault("LANCE_CPU_THREADS", "2")

import faiss
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq


def clustered(rows, dim, clusters, seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32)
    labels = rng.integers(0, clusters, rows)
    vectors = centers[labels] + 0.35 * rng.standard_normal((rows, dim), dtype=np.float32)
    queries = centers[rng.integers(0, clusters, 1000)] + 0.35 * rng.standard_normal((1000, dim), dtype=np.float32)
    return vectors.astype(np.float32), queries.astype(np.float32)


def write(path, vectors):
    rows, dim = vectors.shape
    ids = np.arange(rows, dtype=np.int64)
    v = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    pq.write_table(pa.table({"id": ids, "bucket": ids % 100, "v": v}), path)


def exact(vectors, queries, k, keep=None):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = []
    for q in queries:
        cosine = 1.0 - unit @ (q / np.linalg.norm(q))
        if keep is not None:
            cosine = np.where(keep, cosine, np.inf)
        nearest = np.argpartition(cosine, k)[:k]
        truth.append(set(int(i) for i in nearest if np.isfinite(cosine[i])))
    return truth


def recall(found, truth):
    hits = sum(len(set(f) & t) for f, t in zip(found, truth))
    return hits / max(1, sum(len(t) for t in truth))


def lance_build(work, path):
    """LanceDB's table (the same parquet file) and its HNSW index; returns
    (version, table, index build seconds, scalar index seconds)."""
    import lancedb
    from lancedb.index import BTree, HnswFlat

    db = lancedb.connect(os.path.join(work, "lancedb"))
    table = db.create_table("t", data=pq.read_table(path), mode="overwrite")
    start = time.perf_counter()
    # IVF_HNSW_FLAT with one IVF partition: one HNSW graph over the raw
    # float32 vectors, the closest LanceDB index to FAISS's IndexHNSWFlat.
    table.create_index("v", config=HnswFlat(distance_type="cosine", num_partitions=1, m=16, ef_construction=64))
    build = time.perf_counter() - start
    start = time.perf_counter()
    table.create_index("bucket", config=BTree())
    return lancedb.__version__, table, build, time.perf_counter() - start


def rss_mib(pid):
    """Resident memory of process `pid` in MiB, None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        return None
    return None


def growth(before, after):
    return None if before is None or after is None else after - before


def per_query(run, queries):
    start = time.perf_counter()
    found = [run(q) for q in queries]
    return found, len(queries) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="16,32,64,128")
    parser.add_argument("--port", type=int, default=5497)
    parser.add_argument("--work", default="/tmp/sluice-ann-bench")
    parser.add_argument("--server-pid", type=int, default=None)
    args = parser.parse_args()
    k = args.k
    faiss.omp_set_num_threads(2)

    vectors, queries = clustered(args.rows, args.dim, 100, seed=7)
    queries = queries[: args.queries]
    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, f"ann_{args.rows}_{args.dim}.parquet")
    write(path, vectors)

    sluice = psycopg.connect(host="127.0.0.1", port=args.port, user="sluice", dbname="sluice", autocommit=True)
    sluice.execute(f"CREATE EXTERNAL TABLE ann_file STORED AS PARQUET LOCATION '{path}'")
    sluice.execute(f"CREATE TABLE t AS SELECT id, bucket, v::vector({args.dim}) AS v FROM ann_file")
    start = time.perf_counter()
    sluice.execute("CREATE INDEX t_v ON t USING hnsw (v) WITH (m = 16, ef_construction = 64)")
    sluice_build = time.perf_counter() - start

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    faiss_rss_before = rss_mib(os.getpid())
    start = time.perf_counter()
    flat = faiss.IndexHNSWFlat(args.dim, 16, faiss.METRIC_INNER_PRODUCT)
    flat.hnsw.efConstruction = 64
    flat.add(unit)
    faiss_build = time.perf_counter() - start
    faiss_rss = growth(faiss_rss_before, rss_mib(os.getpid()))

    lance = None
    try:
        lance_version, lance, lance_build_s, lance_btree_s = lance_build(args.work, path)
    except Exception as e:  # noqa: BLE001 - a missing or changed peer must not stop the others
        print(f"# lancedb: unavailable, left out ({type(e).__name__}: {e})")

    def lance_failed(where, e):
        nonlocal lance
        lance = None
        print(f"# lancedb: failed at {where}, left out from here ({type(e).__name__}: {e})")

    print(f"# hnsw build, {args.rows} rows x {args.dim} dims, M=16 efConstruction=64, 2 threads")
    build_line = f"faiss {faiss_build:.2f} s  sluice {sluice_build:.2f} s  ratio sluice/faiss {sluice_build / faiss_build:.2f}"
    if lance is not None:
        build_line += f"  lancedb {lance_build_s:.2f} s  ratio sluice/lancedb {sluice_build / lance_build_s:.2f}"
        print(
            f"# lancedb {lance_version}: IVF_HNSW_FLAT, 1 partition, m=16 ef_construction=64, cosine; "
            f"search nprobes=1 ef=ef_search, no refine; BTREE on bucket {lance_btree_s:.2f} s (not in build)"
        )
    print(build_line)
    with_lance = lance is not None

    def lance_search(ef, where=None):
        def run(q):
            query = lance.search(q, vector_column_name="v").distance_type("cosine").nprobes(1).ef(ef).limit(k)
            if where is not None:
                query = query.where(where, prefilter=True)
            return query.select(["id", "_distance"]).to_arrow()["id"].to_pylist()

        return run

    def lance_cells(label, s_qps, truth, ef, where=None, rows=False):
        """LanceDB's cells of one line: (rows,) recall, QPS, Sluice/LanceDB;
        dashes once LanceDB is left out."""
        widths = ([10] if rows else []) + [12, 9, 12]
        if lance is not None:
            try:
                found, qps = per_query(lance_search(ef, where), queries)
                cells = [f"{min(len(f) for f in found):10}"] if rows else []
                cells += [f"{recall(found, truth):12.3f}", f"{qps:9.0f}", f"{s_qps / qps:12.2f}"]
                return " " + " ".join(cells)
            except Exception as e:  # noqa: BLE001
                lance_failed(label, e)
        return " " + " ".join(f"{'-':>{w}}" for w in widths) if with_lance else ""

    def text(q):
        return "[" + ",".join(repr(float(x)) for x in q) + "]"

    # Each query's parameter is written before the clock starts, as FAISS
    # and LanceDB get theirs as arrays in memory: Python formatting 384
    # floats (~0.1 ms) is the client's cost, not the engine's.
    texts = [text(q) for q in queries]

    sql = f"SELECT id FROM t {{where}} ORDER BY v <=> %s::vector({args.dim}) LIMIT {k}"
    plan = sluice.execute("EXPLAIN " + sql.format(where=""), (text(queries[0]),)).fetchall()
    if "VectorTopKExec: index=" not in str(plan):
        print(f"the index is not used: {plan}", file=sys.stderr)
        return 1

    # The first search reads the graph from the data directory, and
    # psycopg prepares a statement only at its fifth execution: both are
    # one-off costs, timed here apart from the per-query figures (FAISS's
    # and LanceDB's indexes are already in memory).
    sluice_rss_before = rss_mib(args.server_pid)
    start = time.perf_counter()
    sluice.execute(sql.format(where=""), (texts[0],)).fetchall()
    first_ms = (time.perf_counter() - start) * 1000
    sluice_rss = growth(sluice_rss_before, rss_mib(args.server_pid))
    for t in texts[:5]:
        sluice.execute(sql.format(where=""), (t,)).fetchall()
    for q in queries[:5]:
        flat.search((q / np.linalg.norm(q))[None, :], k)
    print(f"# sluice: first search {first_ms:.0f} ms (loads the graph), then 5 warm-up searches (and 5 of FAISS's)")
    # Resident memory the index added: FAISS's process across its build,
    # the server across the search that loaded its graph (a build's
    # transient memory is not counted on either side).
    if sluice_rss is not None and faiss_rss is not None:
        print(f"# index memory (RSS growth): faiss {faiss_rss:.0f} MiB  sluice {sluice_rss:.0f} MiB  ratio {sluice_rss / max(faiss_rss, 1):.2f}")

    truth = exact(vectors, queries, k)
    print(f"# unfiltered top-{k}, {len(queries)} queries one at a time, cosine")
    head = f"{'ef':>5} {'faiss_recall':>12} {'faiss_qps':>10} {'sluice_recall':>13} {'sluice_qps':>10} {'qps_ratio':>9}"
    if with_lance:
        head += f" {'lance_recall':>12} {'lance_qps':>9} {'sluice/lance':>12}"
    print(head)
    for ef in [int(e) for e in args.ef.split(",")]:
        flat.hnsw.efSearch = max(ef, k)
        f_found, f_qps = per_query(lambda q: list(flat.search((q / np.linalg.norm(q))[None, :], k)[1][0]), queries)
        sluice.execute(f"SET vector.ef_search = {max(ef, k)}")
        s_found, s_qps = per_query(
            lambda t: [r[0] for r in sluice.execute(sql.format(where=""), (t,)).fetchall()], texts
        )
        line = f"{ef:5} {recall(f_found, truth):12.3f} {f_qps:10.0f} {recall(s_found, truth):13.3f} {s_qps:10.0f} {s_qps / f_qps:9.2f}"
        line += lance_cells(f"ef {ef}", s_qps, truth, max(ef, k))
        print(line)

    # Batches of 100 queries: FAISS searches each batch in one call (its
    # OpenMP threads split the queries), Sluice as one LATERAL
    # VECTOR_SEARCH statement over a table of the query vectors (each
    # query walks the graph; the statement's queries run on every core).
    # One table per batch: the statement searches every query vector of
    # its table (a WHERE on the query table is applied after the search).
    batch = 100
    starts = list(range(0, len(queries), batch))
    for lo in starts:
        sluice.execute(f"CREATE TABLE qs_{lo} (qid BIGINT, qv VECTOR({args.dim}))")
        with sluice.cursor() as cur:
            cur.executemany(
                f"INSERT INTO qs_{lo} VALUES (%s, %s::vector({args.dim}))",
                [(i, texts[i]) for i in range(lo, min(lo + batch, len(queries)))],
            )
    batch_sql = (
        "SELECT q.qid, s.id FROM qs_{lo} q, LATERAL TABLE(VECTOR_SEARCH(TABLE t, q.qv, DESCRIPTOR(v), "
        f"{k})) AS s"
    )
    plan = sluice.execute("EXPLAIN " + batch_sql.format(lo=0)).fetchall()
    if "VectorBatchTopKExec: k=" not in str(plan) or "index=t_v" not in str(plan):
        print(f"the batch does not walk the index: {plan}", file=sys.stderr)
        return 1
    unit_queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    print(f"# unfiltered top-{k}, batches of {batch} queries, cosine")
    print(f"{'ef':>5} {'faiss_recall':>12} {'faiss_qps':>10} {'sluice_recall':>13} {'sluice_qps':>10} {'qps_ratio':>9}")
    for ef in [int(e) for e in args.ef.split(",")]:
        flat.hnsw.efSearch = max(ef, k)
        start = time.perf_counter()
        f_found = [list(row) for lo in starts for row in flat.search(unit_queries[lo : lo + batch], k)[1]]
        f_qps = len(queries) / (time.perf_counter() - start)
        sluice.execute(f"SET vector.ef_search = {max(ef, k)}")
        start = time.perf_counter()
        s_rows = [sluice.execute(batch_sql.format(lo=lo)).fetchall() for lo in starts]
        s_qps = len(queries) / (time.perf_counter() - start)
        s_found = [[] for _ in queries]
        for rows in s_rows:
            for qid, row_id in rows:
                s_found[qid].append(row_id)
        print(
            f"{ef:5} {recall(f_found, truth):12.3f} {f_qps:10.0f} {recall(s_found, truth):13.3f} "
            f"{s_qps:10.0f} {s_qps / f_qps:9.2f}"
        )

    sluice.execute("SET vector.ef_search = 64")
    flat.hnsw.efSearch = 64
    buckets = np.arange(args.rows) % 100
    print(f"# filtered top-{k}, ef_search 64: rows returned (of {k} wanted), recall, qps")
    head = f"{'share':>6} {'faiss_rows':>10} {'faiss_recall':>12} {'faiss_qps':>9} {'sluice_rows':>11} {'sluice_recall':>13} {'sluice_qps':>10} {'qps_ratio':>9}"
    if with_lance:
        head += f" {'lance_rows':>10} {'lance_recall':>12} {'lance_qps':>9} {'sluice/lance':>12}"
    print(head)
    for share, where, keep in [
        ("10%", "WHERE bucket < 10", buckets < 10),
        ("1%", "WHERE bucket = 0", buckets == 0),
    ]:
        filtered_truth = exact(vectors, queries, k, keep)
        selector = faiss.IDSelectorBatch(np.flatnonzero(keep).astype(np.int64))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=64)

        def faiss_filtered(q):
            ids = flat.search((q / np.linalg.norm(q))[None, :], k, params=params)[1][0]
            return [int(i) for i in ids if i >= 0]

        f_found, f_qps = per_query(faiss_filtered, queries)
        s_found, s_qps = per_query(
            lambda t: [r[0] for r in sluice.execute(sql.format(where=where), (t,)).fetchall()], texts
        )
        f_rows = min(len(f) for f in f_found)
        s_rows = min(len(s) for s in s_found)
        line = (
            f"{share:>6} {f_rows:10} {recall(f_found, filtered_truth):12.3f} {f_qps:9.0f} "
            f"{s_rows:11} {recall(s_found, filtered_truth):13.3f} {s_qps:10.0f} {s_qps / f_qps:9.2f}"
        )
        line += lance_cells(
            f"the {share} filter", s_qps, filtered_truth, 64, where.removeprefix("WHERE "), rows=True
        )
        print(line)
        if s_rows < k:
            print(f"sluice returned {s_rows} rows for a {share} filter", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
