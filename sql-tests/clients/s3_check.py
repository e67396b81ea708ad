"""S3 data directory against a real S3-API server (moto, started here):
tables (with a VECTOR column), DML, COPY FROM STDIN, a view, external CSV
and Parquet tables on s3:// and COPY ... TO s3://, and a continuous query's
checkpoint, all stored in the bucket; a restart on the same URL sees
everything (the materialized view resumes from its checkpoint); an
unreachable endpoint and a missing bucket give clear errors.

Usage: s3_check.py SLUICE_BINARY
Picks free ports itself; needs moto[server] and boto3 in this Python.
Exits non-zero if any check failed.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import psycopg

from crash_check import start  # the same start-up wait as the crash check

BUCKET = "sluice-test"
PEOPLE_CSV = b"id,name,age\n1,ann,31\n2,bob,42\n3,cy,27\n"
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def finish(label, failures, work, procs, logs, hint, suffix=""):
    """Ends a check run: kills what is left of `procs`, closes `logs`,
    shows the server log's tail on failure (else removes `work`), prints
    the summary line and exits with its status."""
    for proc in reversed(procs):
        proc.kill()
        proc.wait()
    for log in logs:
        log.close()
    if failures:
        print(f"--- sluice log tail ({hint})")
        with open(os.path.join(work, "server.log"), "rb") as f:
            print(f.read().decode(errors="replace")[-3000:])
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{label}: {len(failures)} failed" + (f" ({', '.join(failures)})" if failures else ", all passed")
          + suffix)
    sys.exit(1 if failures else 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_env(endpoint):
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test",
               AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
    env.pop("AWS_ALLOW_HTTP", None)
    return env


def start_moto(port, log):
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("moto exited during start-up")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "hung (killed after 30 s)"


def connect(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)


QUERIES = {
    "table items": "SELECT id, name, v FROM items ORDER BY id",
    "view near": "SELECT id, name FROM near ORDER BY id",
    "external CSV people": "SELECT id, name, age FROM people ORDER BY id",
    "external Parquet exported": "SELECT id, name, age FROM exported ORDER BY id",
    "checkpointed view s3_counts": "SELECT k, n, s FROM s3_counts ORDER BY k",
}
# The checkpointed view equals the one-off query over the same events.
ONE_OFF_COUNTS = "SELECT k, count(*), sum(id) FROM s3_events GROUP BY k ORDER BY k"
EXPECTED = {
    "table items": [(1, "a", "[1,0]"), (2, "bb", "[0,1]"), (4, "d", "[2,2]"), (5, "e", "[3,4]")],
    "view near": [(1, "a"), (2, "bb"), (4, "d")],
    "external CSV people": [(1, "ann", 31), (2, "bob", 42), (3, "cy", 27)],
    "external Parquet exported": [(1, "a", 31), (2, "bb", 42)],
}


def snapshot(port):
    out = {}
    with connect(port) as conn:
        for name, sql in QUERIES.items():
            try:
                out[name] = conn.execute(sql).fetchall()
            except psycopg.Error as e:
                out[name] = f"error: {e}"
    return out


def populate(port):
    with connect(port) as conn:
        conn.execute("CREATE TABLE items (id BIGINT, name TEXT, v VECTOR(2))")
        conn.execute("INSERT INTO items VALUES (1, 'a', '[1,0]'), (2, 'b', '[0,1]'), (3, 'c', '[1,1]')")
        with conn.cursor() as cur:
            with cur.copy("COPY items (id, name, v) FROM STDIN") as copy:
                copy.write_row((4, "d", "[2,2]"))
                copy.write_row((5, "e", "[3,4]"))
        conn.execute("UPDATE items SET name = 'bb' WHERE id = 2")
        conn.execute("DELETE FROM items WHERE id = 3")
        conn.execute("CREATE VIEW near AS SELECT id, name FROM items WHERE v <-> '[0,0]'::vector(2) < 3")
        conn.execute(f"CREATE EXTERNAL TABLE people STORED AS CSV LOCATION 's3://{BUCKET}/external/people.csv' "
                     "OPTIONS ('format.has_header' 'true')")
        conn.execute(f"COPY (SELECT i.id, i.name, p.age FROM items i JOIN people p ON i.id = p.id) "
                     f"TO 's3://{BUCKET}/exported/part.parquet' STORED AS PARQUET")
        conn.execute(f"CREATE EXTERNAL TABLE exported STORED AS PARQUET "
                     f"LOCATION 's3://{BUCKET}/exported/part.parquet'")
        # A continuous query over a generator checkpoints to the bucket.
        conn.execute("CREATE TABLE s3_events (id BIGINT, k BIGINT) WITH ('connector' = 'datagen', "
                     "'events' = '300', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', "
                     "'fields.k.min' = '0', 'fields.k.max' = '3')")
        conn.execute("CREATE MATERIALIZED VIEW s3_counts AS "
                     "SELECT k, count(*) AS n, sum(id) AS s FROM s3_events GROUP BY k")
        conn.execute("CHECKPOINT")


def keys(s3, prefix):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="sluice-s3-")
    cwd = os.path.join(work, "cwd")  # sluice runs here; must stay empty
    os.mkdir(cwd)
    log = open(os.path.join(work, "server.log"), "ab")
    moto_log = open(os.path.join(work, "moto.log"), "ab")
    moto_port, port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    env = s3_env(endpoint)
    data_dir = f"s3://{BUCKET}/db"
    procs = []
    try:
        procs.append(start_moto(moto_port, moto_log))
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="external/people.csv", Body=PEOPLE_CSV)

        procs.append(start(binary, port, data_dir, log, env=env, cwd=cwd))
        populate(port)
        before = snapshot(port)
        for name, rows in EXPECTED.items():
            check(f"{name} rows", before[name] == rows, f"got {before[name]}, expected {rows}")
        with connect(port) as conn:
            one_off = conn.execute(ONE_OFF_COUNTS).fetchall()
        check("checkpointed view equals the one-off query", before["checkpointed view s3_counts"] == one_off
              and len(one_off) == 4, f"got {before['checkpointed view s3_counts']}, expected {one_off}")
        check("checkpoint manifests in the bucket", keys(s3, "db/checkpoints/s3_counts/main/manifests/") != [],
              f"bucket holds {keys(s3, 'db/checkpoints/')}")

        check("manifest objects in the bucket", keys(s3, "db/tables/public/items/_manifest/") != [],
              f"bucket holds {keys(s3, 'db/')}")
        check("Parquet data objects in the bucket", keys(s3, "db/tables/public/items/data/") != [],
              f"bucket holds {keys(s3, 'db/')}")
        check("catalog objects in the bucket", keys(s3, "db/catalog/") != [], f"bucket holds {keys(s3, 'db/')}")
        check("COPY TO wrote exported/part.parquet", keys(s3, "exported/") == ["exported/part.parquet"],
              f"got {keys(s3, 'exported/')}")

        status = stop(procs.pop())
        check("SIGTERM ends the server with status 0", status == 0, f"status {status}")
        check("nothing written to the local disk", os.listdir(cwd) == [], f"found {os.listdir(cwd)}")

        procs.append(start(binary, port, data_dir, log, env=env, cwd=cwd))
        after = snapshot(port)
        log.flush()
        with open(os.path.join(work, "server.log"), errors="replace") as server_log:
            resumed = "s3_counts resumes after its checkpoint" in server_log.read()
        check("the view resumed from its checkpoint in the bucket", resumed, "no resume in the server log")
        for name in QUERIES:
            check(f"{name} same after restart", after[name] == before[name],
                  f"got {after[name]}, before {before[name]}")

        with connect(port) as conn:
            try:
                conn.execute("CREATE EXTERNAL TABLE ghost STORED AS CSV LOCATION 's3://no-such-bucket/x.csv'")
                check("missing bucket gives an SQL error", False, "CREATE EXTERNAL TABLE succeeded")
            except psycopg.Error as e:
                check("missing bucket gives an SQL error", True)
                print(f"     ({type(e).__name__}: {str(e).strip().splitlines()[0][:160]})")
        with connect(port) as conn:
            one = conn.execute("SELECT 1").fetchall()
        check("server keeps serving after the error", one == [(1,)], f"got {one}")
        status = stop(procs.pop())
        check("second server exits 0 on SIGTERM", status == 0, f"status {status}")

        closed = free_port()  # nothing listens here
        began = time.monotonic()
        try:
            res = subprocess.run([binary, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", data_dir],
                                 env=s3_env(f"http://127.0.0.1:{closed}"), cwd=cwd, capture_output=True, timeout=60)
            took = time.monotonic() - began
            err = res.stderr.decode(errors="replace")
            check("unreachable endpoint: exits non-zero", res.returncode != 0, f"status {res.returncode}")
            check("unreachable endpoint: stderr names the data directory", "data directory" in err, f"stderr {err!r}")
            print(f"     (exit {res.returncode} after {took:.1f} s: {err.strip().splitlines()[-1][:160] if err.strip() else ''})")
        except subprocess.TimeoutExpired:
            check("unreachable endpoint: exits within 60 s", False, "still running after 60 s")
    except Exception as e:  # a step that could not run at all
        check("run", False, f"{type(e).__name__}: {e}")
    finish("s3 check", failures, work, procs, [log, moto_log], f"moto log: {work}/moto.log")


if __name__ == "__main__":
    main()
