"""Model inference through a real client (psycopg 3) against `sluice serve`
processes started here, each on a free port with its own data directory:

1. no ONNX Runtime anywhere (empty SLUICE_HOME, SLUICE_ONNXRUNTIME and
   ORT_DYLIB_PATH unset): CREATE MODEL fails with 58P01 "ONNX Runtime library
   not found", the connection keeps working, EMBED('minilm', …) is 42704
   (the bundled model is not registered without its files);
2. SLUICE_ONNXRUNTIME naming a file that is not a library: 58P01 "cannot load
   ONNX Runtime", and the server keeps serving and is still alive;
3. the normal environment: EMBED('minilm', …) as pgvector text, through
   pgvector's psycopg adapter (text and binary), with a bound parameter, and
   ML_PREDICT's table form on linear.onnx.

Usage: model_check.py SLUICE_BINARY
Prints one PASS/FAIL line per check; exits non-zero if any failed.
"""

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psycopg

RUNTIME_ENV = ("SLUICE_ONNXRUNTIME", "ORT_DYLIB_PATH")
REAL_HOME = os.environ.get("SLUICE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share", "sluice")
LINEAR = os.path.join(REAL_HOME, "test-models", "linear.onnx")
MINILM_DIMS = 384

results = []  # (name, ok)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `sluice serve` with its own port, data directory and log."""

    def __init__(self, binary, env, work):
        self.binary, self.env, self.work = binary, env, work
        self.port = free_port()
        self.log_path = os.path.join(work, "server.log")
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                 "--data-dir", os.path.join(self.work, "data")],
                stdout=log, stderr=log, env=self.env,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.connect().close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited during start-up with status {self.proc.returncode}")
                time.sleep(0.05)
        raise RuntimeError("server did not accept connections within 60 s")

    def connect(self, **kwargs):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="sluice", dbname="sluice",
                               connect_timeout=5, autocommit=True, **kwargs)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return "(no server log)"
        status = "running" if self.alive() else f"exited with status {self.proc.returncode if self.proc else '?'}"
        return f"server {status}; log tail:\n" + "\n".join("    " + l for l in tail)


def check(name, server, fn):
    """Runs one sub-check; prints PASS, or FAIL with the reason and the
    server's log tail. Returns whether it passed."""
    try:
        detail = fn()
        print(f"PASS {name}" + (f" ({detail})" if detail else ""))
        results.append((name, True))
        return True
    except Exception as e:  # an assertion, a driver error, anything
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        if server is not None:
            print(server.log_tail())
        results.append((name, False))
        return False


def expect_error(conn, sql, sqlstate, text):
    """Runs sql expecting an error with this SQLSTATE and text in its message."""
    try:
        conn.execute(sql).fetchall()
    except psycopg.Error as e:
        state, message = e.sqlstate, (e.diag.message_primary or str(e))
        assert state == sqlstate, f"SQLSTATE {state}, expected {sqlstate}: {message}"
        assert text in message, f"message {message!r} lacks {text!r}"
        return f"{state}: {message[:100]}{'…' if len(message) > 100 else ''}"
    raise AssertionError(f"{sql!r} succeeded, expected SQLSTATE {sqlstate}")


def select_one(conn):
    row = conn.execute("SELECT 1").fetchone()
    assert row == (1,), row


def base_env(home):
    """The environment with an empty SLUICE_HOME and no runtime variables."""
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ)
    for var in RUNTIME_ENV:
        env.pop(var, None)
    env["SLUICE_HOME"] = home
    return env


def run_scenario(binary, label, env, body):
    """Starts a server in a fresh temp dir, runs body(server), stops it."""
    work = tempfile.mkdtemp(prefix="sluice-model-check-")
    server = Server(binary, env(work), work)
    try:
        if check(f"{label}: server starts", server, server.start):
            body(server)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def no_runtime(server):
    create = f"CREATE MODEL lin WITH ('path' = '{LINEAR}')"
    with server.connect() as conn:
        check("no runtime: CREATE MODEL fails with 58P01 'ONNX Runtime library not found'", server,
              lambda: expect_error(conn, create, "58P01", "ONNX Runtime library not found"))
        check("no runtime: SELECT 1 still works on the same connection", server, lambda: select_one(conn))
        check("no runtime: EMBED('minilm', 'x') fails with 42704 (bundled model not registered)", server,
              lambda: expect_error(conn, "SELECT EMBED('minilm', 'x')", "42704", "minilm"))
        check("no runtime: server still serves after the errors", server, lambda: select_one(conn))


def bad_runtime(server):
    create = f"CREATE MODEL lin WITH ('path' = '{LINEAR}')"
    with server.connect() as conn:
        check("bad runtime: CREATE MODEL fails with 58P01 'cannot load ONNX Runtime'", server,
              lambda: expect_error(conn, create, "58P01", "cannot load ONNX Runtime"))
        check("bad runtime: SELECT 1 still works on the same connection", server, lambda: select_one(conn))
    def alive():
        with server.connect() as other:
            select_one(other)
        assert server.alive(), "server process exited"
    check("bad runtime: server process alive and accepting new connections", server, alive)


def normal(server):
    import numpy as np
    from pgvector.psycopg import register_vector

    literal = {}

    def text_form():
        with server.connect() as conn:
            value = conn.execute("SELECT EMBED('minilm', 'hello')").fetchone()[0]
        assert isinstance(value, str), f"expected text, got {type(value).__name__}: {value!r:.80}"
        assert value.startswith("[") and value.endswith("]"), f"{value!r:.80}"
        dims = value.count(",") + 1
        assert dims == MINILM_DIMS, f"{dims} dimensions, expected {MINILM_DIMS}"
        return f"{dims} dimensions"

    def adapter():
        details = []
        with server.connect() as conn:
            register_vector(conn)
            for binary in (False, True):
                v = conn.cursor(binary=binary).execute("SELECT EMBED('minilm', 'hello')").fetchone()[0]
                form = "binary" if binary else "text"
                assert isinstance(v, np.ndarray), f"{form}: expected a numpy array, got {type(v).__name__}"
                assert v.shape == (MINILM_DIMS,), f"{form}: shape {v.shape}"
                norm = float(np.linalg.norm(v))
                assert abs(norm - 1) < 1e-3, f"{form}: norm {norm}"
                literal.setdefault("v", v)
                details.append(f"{form} norm {norm:.6f}")
        return ", ".join(details)

    def parameter():
        assert "v" in literal, "no literal result to compare with (the adapter check failed)"
        base = literal["v"].astype(np.float64)
        details = []
        with server.connect() as conn:
            register_vector(conn)
            cur = conn.cursor()
            for prepare in (None, True):
                # prepare=True makes psycopg use a named server-side statement.
                for _ in range(2 if prepare else 1):
                    v = cur.execute("SELECT EMBED('minilm', %s)", ("hello",), prepare=prepare).fetchone()[0]
                    assert isinstance(v, np.ndarray) and v.shape == (MINILM_DIMS,), f"{type(v).__name__} {getattr(v, 'shape', '')}"
                    v = v.astype(np.float64)
                    cosine = float(base @ v / (np.linalg.norm(base) * np.linalg.norm(v)))
                    assert cosine > 0.9999, f"cosine {cosine} with the literal's embedding (prepare={prepare})"
                details.append(f"{'prepared' if prepare else 'unnamed'} cosine {cosine:.6f}")
        return ", ".join(details)

    def ml_predict():
        with server.connect() as conn:
            conn.execute(f"CREATE MODEL lin WITH ('path' = '{LINEAR}')")
            conn.execute("CREATE TABLE t (x1 REAL, x2 REAL)")
            conn.execute("INSERT INTO t VALUES (1, 2), (3, 4)")
            cur = conn.execute("SELECT * FROM ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2))")
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
        for col in ("x1", "x2", "score", "label"):
            assert col in names, f"no column {col} in {names}"
        got = sorted((dict(zip(names, r)) for r in rows), key=lambda r: r["x1"])
        assert len(got) == 2, f"{len(got)} rows: {rows}"
        for r, label in zip(got, (0, 1)):
            want = 0.5 * r["x1"] - 0.25 * r["x2"] + 1
            assert math.isclose(r["score"], want, abs_tol=1e-6), f"score {r['score']} for {r}, expected {want}"
            assert r["label"] == label, f"label {r['label']} for {r}, expected {label}"
        assert [r["score"] for r in got] == [1.0, 1.5], got
        return f"columns {names}, rows {[tuple(r.values()) for r in got]}"

    check("EMBED('minilm', 'hello') is a 384-dimension vector in text form", server, text_form)
    check("EMBED with pgvector's psycopg adapter: numpy (384,), norm 1 (text and binary)", server, adapter)
    check("EMBED with a bound parameter equals the literal (unnamed and prepared)", server, parameter)
    check("ML_PREDICT(TABLE t, MODEL lin, DESCRIPTOR(x1, x2)) on linear.onnx", server, ml_predict)


def main():
    binary = os.path.abspath(sys.argv[1])
    if not os.path.isfile(LINEAR):
        print(f"FAIL test model {LINEAR} missing: run scripts/install-deps.sh")
        sys.exit(1)
    bad_library = tempfile.NamedTemporaryFile("w", prefix="not-onnxruntime-", suffix=".so", delete=False)
    bad_library.write("this is not a shared library\n")
    bad_library.close()
    try:
        run_scenario(binary, "no runtime", lambda work: base_env(os.path.join(work, "home")), no_runtime)
        run_scenario(binary, "bad runtime",
                     lambda work: {**base_env(os.path.join(work, "home")), "SLUICE_ONNXRUNTIME": bad_library.name},
                     bad_runtime)
        run_scenario(binary, "normal environment", lambda work: dict(os.environ), normal)
    finally:
        os.unlink(bad_library.name)
    failed = [name for name, ok in results if not ok]
    print(f"model checks: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
