"""Model inference: Sluice's EMBED / ML_PREDICT vs raw Python onnxruntime.

Embedding: N generated English-like sentences (16-64 MiniLM tokens each,
fixed seed) through all-MiniLM-L6-v2 int8. The peer is Python onnxruntime on
the same model file with the same intra-op thread count, tokenization,
padding to the longest in the batch, mean pooling and normalisation all
inside the timing, at batch sizes 1..128; Sluice runs
`SELECT EMBED('minilm', body) FROM sentences` (adaptive batching) and the
same with a max_batch_size=1 model (per row). Tabular: 1M rows of two REALs
through linear.onnx with ML_PREDICT vs onnxruntime over numpy arrays.

Prints rows/s and the ratio sluice/peer (higher is better for Sluice). Both
sides run in one process, one after the other, so they share machine noise.
"""

import argparse
import os
import random
import sys
import time

import numpy as np

THREADS_DEFAULT = int(os.environ.get("THREADS", "2"))
# The tokenizers library parallelises encode_batch over its own rayon pool;
# hold it to the same thread budget as the model (read at import time).
os.environ.setdefault("RAYON_RS_NUM_CPUS", str(THREADS_DEFAULT))

import onnxruntime as ort  # noqa: E402

# The peer embeds exactly as the reference the tests check EMBED against.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sql-tests", "models"))
from reference_embeddings import embed, load_tokenizer  # noqa: E402

MIN_TOKENS, MAX_TOKENS = 16, 64  # per sentence, [CLS] and [SEP] included
BATCH_SIZES = [1, 8, 32, 64, 128]

WORDS = """
the a of and to in is was for on with as by at from that this it be are were
has have had not but or which one all their there been more when will would
who so no if out up about into than them can only other new some could time
these two may first then do any like my now over such our man me even most
made after also did many before must through back years where much your way
well down should because each just those people how too little state good
very make world still own see men work long get here between both life being
under never day same another know while last might us great old year off come
since against go came right used take three states himself few house use
during without again place around however home small found thought went say
part once general high upon school every does got united left number course
war until always away something fact though water less public put think
almost hand enough far took head yet government system better set told
nothing night end why called didn't eyes find going look asked later knew
point next city business give group toward young days let room president side
social given present several order national possible rather second face per
among form important often things looked early white case john become large
big need four within felt along children saw best church ever least power
development light thing seemed family interest want members mind country area
others done turned although open problem certain kind began different door
thus help sense means whole matter perhaps itself york times law human line
above name example action company hands local show whether five history gave
today either act feet across taken past quite anything seen having death
week experience body word half really field am car words already themselves
information tell together college shall money period held keep sure probably
free real seems behind cannot miss political air question making office brought
whose special major heard problems federal became study ago moment available
known result street economic boy reason change south board individual job
society areas west close turn love community true court force full seem
database vector embedding throughput latency checkpoint watermark partition
tokenizer inference quantization regional streaming operator barrier snapshot
parquet columnar aggregation benchmark pipeline transformer semantic retrieval
""".split()


def make_sentences(tok, n, seed):
    """n sentences, each MIN_TOKENS..MAX_TOKENS tokens long (verified)."""
    rng = random.Random(seed)
    # BERT's pre-tokenizer splits on whitespace and punctuation, and WordPiece
    # works per word, so a sentence's length is the sum of its words' lengths
    # plus one per punctuation mark plus [CLS] and [SEP].
    cost = {w: len(tok.encode(w, add_special_tokens=False).ids) for w in WORDS}
    out = []
    while len(out) < n:
        target = rng.randint(MIN_TOKENS, MAX_TOKENS)
        words, used = [], 3  # [CLS], [SEP], the final period
        while True:
            w = rng.choice(WORDS)
            comma = len(words) > 2 and rng.random() < 0.08
            extra = cost[w] + (1 if comma else 0)
            if used + extra > target:
                break
            words.append(w + ("," if comma else ""))
            used += extra
        if words and words[-1].endswith(","):  # no comma before the period
            words[-1] = words[-1][:-1]
            used -= 1
        if used < MIN_TOKENS:
            continue
        out.append(" ".join(words).capitalize() + ".")
    counts = [sum(e.attention_mask) for e in tok.encode_batch(out)]  # unpadded lengths
    assert MIN_TOKENS <= min(counts) and max(counts) <= MAX_TOKENS, (min(counts), max(counts))
    return out, counts


def ort_session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def embed_batch(session, tok, sentences):
    return embed(session, tok, sentences)[0]


def peer_embed(session, tok, sentences, batch):
    start = time.perf_counter()
    for i in range(0, len(sentences), batch):
        embed_batch(session, tok, sentences[i : i + batch])
    return time.perf_counter() - start


def best_time(run, repeats):
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def parse_vector(text):
    return np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)


class Report:
    def __init__(self):
        self.rows = []
        self.failed = False

    def add(self, workload, peer, peer_rate, sluice_rate=None, error=None):
        self.rows.append((workload, peer, peer_rate, sluice_rate, error))

    def fail(self, workload, peer, peer_rate, error):
        self.failed = True
        self.add(workload, peer, peer_rate, error=error)
        print(f"FAILED {workload}: {error}", file=sys.stderr)

    def print(self):
        print(f"{'workload':28} {'peer':26} {'peer_rows_s':>12} {'sluice_rows_s':>14} {'ratio':>6}")
        for workload, peer, p, s, error in self.rows:
            if error is not None:
                print(f"{workload:28} {peer:26} {p:12.0f} {'FAILED':>14} {'-':>6}")
            elif s is None:
                print(f"{workload:28} {peer:26} {p:12.0f} {'-':>14} {'-':>6}")
            else:
                print(f"{workload:28} {peer:26} {p:12.0f} {s:14.0f} {s / p:6.2f}")


def sluice_embed(conn, args, sentences, session, tok, peer_best, peer_b1, report):
    home = args.sluice_home
    model = f"{home}/models/minilm/model.onnx"
    tokenizer = f"{home}/models/minilm/tokenizer.json"
    conn.execute("CREATE TABLE sentences (id BIGINT, body TEXT)")
    chunk = 1000  # multi-row INSERT: COPY FROM STDIN is not supported yet
    for i in range(0, len(sentences), chunk):
        values = ",".join(
            f"({i + j}, '{s.replace(chr(39), chr(39) * 2)}')"
            for j, s in enumerate(sentences[i : i + chunk])
        )
        conn.execute(f"INSERT INTO sentences VALUES {values}")

    # Sluice registers the bundled `minilm` (intra_threads = the machine's
    # cores) on a data directory's first start; with another THREADS, or if
    # it is missing, register one with the peer's thread count.
    name = "minilm"
    try:
        conn.execute("SELECT EMBED('minilm', 'probe')").fetchall()
        if args.threads != os.cpu_count():
            raise LookupError
    except Exception:
        name = "minilm_bench"
        conn.execute(
            f"CREATE MODEL {name} WITH ('provider'='onnx', 'task'='embedding', "
            f"'path'='{model}', 'tokenizer'='{tokenizer}', 'intra_threads'='{args.threads}')"
        )

    n = len(sentences)
    try:
        def run():
            rows = conn.execute(f"SELECT EMBED('{name}', body) FROM sentences").fetchall()
            assert len(rows) == n, len(rows)
            return rows

        t, rows = best_time(run, args.repeats)
        assert len(parse_vector(rows[0][0])) == 384
        # Same model, same pipeline: the vectors must agree with the peer's.
        got = conn.execute(
            f"SELECT id, EMBED('{name}', body) FROM sentences WHERE id < 20"
        ).fetchall()
        want = embed_batch(session, tok, sentences[:20])
        worst = min(float(parse_vector(v) @ want[i]) for i, v in got)
        if len(got) != 20 or worst < 0.9999:
            raise AssertionError(f"{len(got)} rows, worst cosine vs peer {worst:.6f}")
        print(f"# EMBED vs peer on 20 sentences: worst cosine {worst:.7f}")
        report.add("embed (batched)", f"python ort best b={peer_best[0]}", peer_best[1], n / t)
    except Exception as e:
        report.fail("embed (batched)", f"python ort best b={peer_best[0]}", peer_best[1], e)

    per_row = min(args.rows_per_row, n)
    try:
        conn.execute(
            f"CREATE MODEL minilm_per_row WITH ('provider'='onnx', 'task'='embedding', "
            f"'path'='{model}', 'tokenizer'='{tokenizer}', 'max_batch_size'='1', "
            f"'intra_threads'='{args.threads}')"
        )
        t, rows = best_time(
            lambda: conn.execute(
                f"SELECT EMBED('minilm_per_row', body) FROM sentences WHERE id < {per_row}"
            ).fetchall(),
            1,  # slow, and per-row time varies little
        )
        assert len(rows) == per_row, len(rows)
        report.add(f"embed (per row, {per_row})", "python ort b=1", peer_b1, per_row / t)
    except Exception as e:
        report.fail(f"embed (per row, {per_row})", "python ort b=1", peer_b1, e)


def tabular(conn, args, report):
    rows = args.tabular_rows
    lin = f"{args.sluice_home}/test-models/linear.onnx"
    conn.execute(
        "CREATE TABLE t AS SELECT CAST(random() AS REAL) AS x1, CAST(random() AS REAL) AS x2 "
        f"FROM generate_series(1, {rows})"
    )
    # The peer runs on the very rows Sluice holds (fetched outside the timing).
    x = np.array(conn.execute("SELECT x1, x2 FROM t").fetchall(), dtype=np.float32)
    assert x.shape == (rows, 2), x.shape
    session = ort_session(lin, args.threads)

    def peer(batch):
        total = 0.0
        for i in range(0, rows, batch):
            score, _label = session.run(None, {"features": x[i : i + batch]})
            total += float(score.sum(dtype=np.float64))
        return total

    want = float((x.astype(np.float64) @ [0.5, -0.25]).sum() + rows)
    peers = {}
    for name, batch in [("python ort b=8192", 8192), ("python ort one batch", rows)]:
        t, total = best_time(lambda: peer(batch), args.repeats)
        assert abs(total - want) <= 1e-4 * abs(want), (total, want)
        peers[name] = rows / t

    workload = f"ml_predict linear ({rows})"
    try:
        conn.execute(
            f"CREATE MODEL lin WITH ('provider'='onnx', 'path'='{lin}', 'intra_threads'='{args.threads}')"
        )
        t, (count, total) = best_time(
            lambda: conn.execute(
                "SELECT count(*), sum(score) FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2))"
            ).fetchone(),
            args.repeats,
        )
        if count != rows or abs(float(total) - want) > 1e-4 * abs(want):
            raise AssertionError(f"count {count} sum {total}, want {rows} and {want}")
    except Exception as e:
        for name, rate in peers.items():
            report.fail(workload, name, rate, e)
        return
    for name, rate in peers.items():
        report.add(workload, name, rate, rows / t)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sluice-home", default=os.environ.get(
        "SLUICE_HOME", os.path.expanduser("~/.local/share/sluice")))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rows-per-row", type=int, default=10_000)
    parser.add_argument("--tabular-rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, help="a running sluice server; omit for the peer alone")
    args = parser.parse_args()

    home = args.sluice_home
    tok = load_tokenizer(f"{home}/models/minilm/tokenizer.json")
    session = ort_session(f"{home}/models/minilm/model.onnx", args.threads)
    sentences, counts = make_sentences(tok, args.rows, seed=42)
    print(
        f"# all-MiniLM-L6-v2 int8, {args.rows} sentences, {min(counts)}-{max(counts)} tokens "
        f"(mean {np.mean(counts):.1f}), {args.threads} intra-op threads, "
        f"onnxruntime {ort.__version__}"
    )

    # Peer sweep, one pass per batch size, then the best size again so it
    # gets the same best-of-N as Sluice.
    print(f"{'python ort batch':>16} {'sentences_s':>12}")
    sweep = {}
    for b in BATCH_SIZES:
        sweep[b] = args.rows / peer_embed(session, tok, sentences, b)
        print(f"{b:16d} {sweep[b]:12.0f}")
    best_b = max(sweep, key=sweep.get)
    if args.repeats > 1:
        t, _ = best_time(lambda: peer_embed(session, tok, sentences, best_b), args.repeats - 1)
        sweep[best_b] = max(sweep[best_b], args.rows / t)
    peer_best = (best_b, sweep[best_b])
    print(f"# python ort best: batch {best_b}, {sweep[best_b]:.0f} sentences/s (best of {args.repeats})")

    report = Report()
    if args.port is None:
        report.add("embed (batched)", f"python ort best b={best_b}", sweep[best_b])
        report.add("embed (per row)", "python ort b=1", sweep[1])
        report.print()
        return

    import psycopg

    conn = psycopg.connect(
        host="127.0.0.1", port=args.port, user="sluice", dbname="sluice", autocommit=True
    )
    sluice_embed(conn, args, sentences, session, tok, peer_best, sweep[1], report)
    tabular(conn, args, report)
    report.print()
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
