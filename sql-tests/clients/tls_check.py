"""TLS through real clients (psql, psycopg 3) against `sluice serve`
processes started here with a certificate made here by openssl (a test CA
signing a server certificate for localhost and 127.0.0.1):

1. --tls-cert/--tls-key/--tls-required: psql, psycopg and pgjdbc connect with
   sslmode=require and verify-full (the CA as sslrootcert) and the
   connection is encrypted; sslmode=disable is refused with SQLSTATE 28000
   and a message saying why; verify-full against another CA fails;
   SCRAM-SHA-256 over TLS logs in with the right password only.
2. TLS offered, not required: both plain and encrypted clients are served.
3. A certificate file that is not PEM, or a key not matching the
   certificate, stops the server at start-up with an error naming the file.

Usage: tls_check.py SLUICE_BINARY
Prints one PASS/FAIL line per check; exits non-zero if any failed.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psycopg

from model_check import free_port

results = []  # (name, ok)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(work, name):
    """A self-signed CA: NAME.key and NAME.crt in work."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
            cwd=work)


def make_server_cert(work, ca):
    """server.key and server.crt (for localhost and 127.0.0.1) signed by ca."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=work)
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=work)


class Server:
    """One `sluice serve` with extra arguments, its own port, data and log."""

    def __init__(self, binary, work, *args):
        self.port = free_port()
        self.log_path = os.path.join(work, f"server-{self.port}.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                 "--data-dir", os.path.join(work, f"data-{self.port}"), *args],
                stdout=log, stderr=log)

    def wait_ready(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode}: {self.log()}")
            ready = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)])
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("server did not accept connections within 60 s")

    def exit_status(self, timeout=60):
        """For a server expected to refuse to start: its status and log."""
        try:
            return self.proc.wait(timeout=timeout), self.log()
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("the server started")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check(name, fn):
    try:
        detail = fn()
        print(f"PASS {name}" + (f" ({detail})" if detail else ""))
        results.append(True)
    except Exception as e:  # an assertion, a driver error, anything
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        results.append(False)


def conninfo(server, host="127.0.0.1", **params):
    parts = {"host": host, "port": server.port, "user": "sluice", "dbname": "sluice",
             "connect_timeout": 10, **params}
    return " ".join(f"{k}={v}" for k, v in parts.items())


def psql(server, sql, host="127.0.0.1", **params):
    return subprocess.run(["psql", "-X", "-A", "-t", "-c", sql, conninfo(server, host, **params)],
                          capture_output=True, text=True, timeout=60)


def encrypted_psycopg(server, **params):
    with psycopg.connect(conninfo(server, **params), autocommit=True) as conn:
        assert conn.info.pgconn.ssl_in_use, "psycopg's connection is not encrypted"
        row = conn.execute("SELECT %s::int + 1, %s::text", (41, "über")).fetchone()
        assert row == (42, "über"), row


def refused(connect, text):
    try:
        connect().close()
    except psycopg.OperationalError as e:
        assert text in str(e), f"error {str(e)!r} lacks {text!r}"
        return str(e).strip().splitlines()[-1][:100]
    raise AssertionError("the connection succeeded")


JDBC_JAR = "/usr/share/java/postgresql.jar"


def jdbc(server, expected, host="127.0.0.1", **params):
    """pgjdbc (JdbcTls.java) connecting with `params` in its URL; asserts
    the `expected` outcome (`ok` or `refused:SQLSTATE`)."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    url = f"jdbc:postgresql://{host}:{server.port}/sluice?{query}"
    program = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jdbc", "JdbcTls.java")
    out = subprocess.run(["java", "-cp", JDBC_JAR, program, url, expected],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.stdout + out.stderr).strip()[-300:]
    return out.stdout.strip()[:100]


def required_scenario(binary, work):
    ca = os.path.join(work, "ca.crt")
    server = Server(binary, work, "--tls-cert", os.path.join(work, "server.crt"),
                    "--tls-key", os.path.join(work, "server.key"), "--tls-required")
    try:
        server.wait_ready()

        def psql_require():
            out = psql(server, "\\conninfo", sslmode="require")
            assert out.returncode == 0, out.stderr
            assert "SSL connection" in out.stdout, out.stdout
            return out.stdout.strip().splitlines()[-1][:90]

        def psql_verify_full():
            out = psql(server, "SELECT 6 * 7", host="localhost", sslmode="verify-full", sslrootcert=ca)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "42", out.stdout

        def psql_plain_refused():
            out = psql(server, "SELECT 1", sslmode="disable")
            assert out.returncode != 0, "a plain connection was served"
            assert "accepts only encrypted connections" in out.stderr, out.stderr
            return out.stderr.strip()[:100]

        check("psql sslmode=require: the connection is encrypted", psql_require)
        check("psql sslmode=verify-full with the CA", psql_verify_full)
        check("psql sslmode=disable refused by --tls-required", psql_plain_refused)
        check("psycopg sslmode=require", lambda: encrypted_psycopg(server, sslmode="require"))
        check("psycopg sslmode=verify-full",
              lambda: encrypted_psycopg(server, host="localhost", sslmode="verify-full", sslrootcert=ca))
        check("psycopg sslmode=disable refused",
              lambda: refused(lambda: psycopg.connect(conninfo(server, sslmode="disable")),
                              "accepts only encrypted connections"))
        check("psycopg verify-full against another CA fails",
              lambda: refused(lambda: psycopg.connect(conninfo(
                  server, host="localhost", sslmode="verify-full",
                  sslrootcert=os.path.join(work, "other.crt"))), "certificate verify failed"))
        # pgjdbc: under --tls-required a served connection is an encrypted
        # one; verify-full checks the certificate against the CA (PEM).
        check("pgjdbc sslmode=require", lambda: jdbc(server, "ok", sslmode="require"))
        check("pgjdbc sslmode=verify-full with the CA",
              lambda: jdbc(server, "ok", host="localhost", sslmode="verify-full", sslrootcert=ca))
        check("pgjdbc sslmode=disable refused (28000)",
              lambda: jdbc(server, "refused:28000", sslmode="disable"))
        check("pgjdbc verify-full against another CA fails",
              lambda: jdbc(server, "refused:08006", host="localhost", sslmode="verify-full",
                           sslrootcert=os.path.join(work, "other.crt")))
        check("the server still serves after the refusals",
              lambda: encrypted_psycopg(server, sslmode="require"))
    finally:
        server.stop()


def scram_scenario(binary, work):
    users = os.path.join(work, "users")
    with open(users, "w") as f:
        f.write("ada:lovelace\n")
    server = Server(binary, work, "--tls-cert", os.path.join(work, "server.crt"),
                    "--tls-key", os.path.join(work, "server.key"), "--tls-required",
                    "--auth", "scram-sha-256", "--users-file", users)
    try:
        server.wait_ready()

        def right_password():
            with psycopg.connect(conninfo(server, sslmode="require", user="ada", password="lovelace")) as conn:
                assert conn.info.pgconn.ssl_in_use
                assert conn.execute("SELECT current_user, session_user").fetchone() == ("ada", "ada")

        check("SCRAM-SHA-256 over TLS: the right password logs in", right_password)
        check("SCRAM-SHA-256 over TLS: a wrong password is refused",
              lambda: refused(lambda: psycopg.connect(conninfo(
                  server, sslmode="require", user="ada", password="babbage")),
                  "password authentication failed"))
    finally:
        server.stop()


def optional_scenario(binary, work):
    server = Server(binary, work, "--tls-cert", os.path.join(work, "server.crt"),
                    "--tls-key", os.path.join(work, "server.key"))
    try:
        server.wait_ready()

        def plain():
            with psycopg.connect(conninfo(server, sslmode="disable"), autocommit=True) as conn:
                assert not conn.info.pgconn.ssl_in_use
                assert conn.execute("SELECT 1").fetchone() == (1,)

        check("TLS offered: a plain client is served", plain)
        check("TLS offered: an encrypted client is served",
              lambda: encrypted_psycopg(server, sslmode="require"))
    finally:
        server.stop()


def bad_files_scenario(binary, work):
    not_pem = os.path.join(work, "not-a-cert.pem")
    with open(not_pem, "w") as f:
        f.write("this is not a certificate\n")

    def not_a_certificate():
        status, log = Server(binary, work, "--tls-cert", not_pem,
                             "--tls-key", os.path.join(work, "server.key")).exit_status()
        assert status != 0, "the server started"
        assert "not-a-cert.pem" in log, log
        return log.strip().splitlines()[-1][:120]

    def mismatched_key():
        status, log = Server(binary, work, "--tls-cert", os.path.join(work, "server.crt"),
                             "--tls-key", os.path.join(work, "other.key")).exit_status()
        assert status != 0, "the server started"
        assert "do not make a usable pair" in log, log
        return log.strip().splitlines()[-1][:120]

    check("a certificate file that is not PEM stops the server, naming the file", not_a_certificate)
    check("a key that does not match the certificate stops the server", mismatched_key)


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="sluice-tls-check-")
    try:
        make_ca(work, "ca")
        make_ca(work, "other")
        make_server_cert(work, "ca")
        required_scenario(binary, work)
        scram_scenario(binary, work)
        optional_scenario(binary, work)
        bad_files_scenario(binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = results.count(False)
    print(f"tls: {results.count(True)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
