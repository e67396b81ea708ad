"""Roles and privileges against a real server with SCRAM-SHA-256
authentication: an operator user from --users-file creates roles with
CREATE ROLE / CREATE USER, they log in with their passwords (and not with
wrong ones, nor without LOGIN), a plain role may not create models, read
server files or write them until granted the predefined role, ALTER ROLE
changes a password, DROP ROLE ends logins, and everything survives a
restart.

Usage: roles_check.py SLUICE_BIN
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import psycopg

failures = []


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + (f" ({detail})" if detail and not condition else ""))
    if not condition:
        failures.append(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, work):
        self.binary, self.work, self.port, self.process = binary, work, free_port(), None

    def start(self):
        log = open(os.path.join(self.work, "server.log"), "a")
        self.process = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.join(self.work, "data"),
             "--auth", "scram-sha-256", "--users-file", os.path.join(self.work, "users"),
             "--object-root", os.path.join(self.work, "objects")],
            stdout=log, stderr=log)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("the server exited during start-up")
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def connect(self, user, password):
        return psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               dbname="sluice", autocommit=True, connect_timeout=10)


def sqlstate_of(action):
    try:
        action()
    except psycopg.Error as e:
        return e.sqlstate
    return None


def login_fails(server, user, password):
    try:
        server.connect(user, password).close()
    except psycopg.OperationalError as e:
        return "password authentication failed" in str(e)
    return False


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="sluice-roles-") as work:
        os.makedirs(os.path.join(work, "objects"))
        secret_file = os.path.join(work, "objects", "secret.txt")
        with open(secret_file, "w") as f:
            f.write("top secret\n")
        with open(os.path.join(work, "users"), "w") as f:
            f.write("admin:admin-password\n")
        server = Server(binary, work)
        server.start()
        try:
            run(server, secret_file, work)
        finally:
            server.stop()
    print(f"roles: {'all passed' if not failures else f'{len(failures)} failed'}")
    sys.exit(1 if failures else 0)


def run(server, secret_file, work):
    read_secret = f"SELECT length(read_bytes('file://{secret_file}'))"
    out_file = os.path.join(work, "out.csv")
    with server.connect("admin", "admin-password") as admin:
        admin.execute("CREATE TABLE notes (id INT, body TEXT)")
        admin.execute("INSERT INTO notes VALUES (1, 'shared')")
        admin.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-password'")
        admin.execute("CREATE USER bob WITH PASSWORD 'bob-password'")
        admin.execute("CREATE ROLE carol PASSWORD 'carol-password'")
        check("a duplicate role is 42710",
              sqlstate_of(lambda: admin.execute("CREATE ROLE alice")) == "42710")
        check("a predefined role's name is reserved (42939)",
              sqlstate_of(lambda: admin.execute("CREATE ROLE pg_read_server_files")) == "42939")
        check("an unsupported role option is refused (0A000)",
              sqlstate_of(lambda: admin.execute("CREATE ROLE dave CONNECTION LIMIT 3")) == "0A000")
        check("the operator may read server files",
              admin.execute(read_secret).fetchone() == (11,))

    with server.connect("alice", "alice-password") as alice:
        row = alice.execute("SELECT current_user, count(*) FROM notes").fetchone()
        check("a role created with LOGIN PASSWORD logs in and reads tables", row == ("alice", 1), row)
        check("a plain role may not read server files (42501)",
              sqlstate_of(lambda: alice.execute(read_secret)) == "42501")
        check("… nor write them with COPY TO (42501)",
              sqlstate_of(lambda: alice.execute(f"COPY notes TO '{out_file}'")) == "42501")
        check("… and nothing was written", not os.path.exists(out_file))
        check("… nor create models (42501)",
              sqlstate_of(lambda: alice.execute(
                  "CREATE MODEL m INPUT (t TEXT) OUTPUT (e VECTOR(3)) WITH ('path' = '/x.onnx')"
              )) == "42501")
        check("… nor read them through a continuous query (42501)",
              sqlstate_of(lambda: alice.execute(
                  f"CREATE MATERIALIZED VIEW peek AS SELECT read_bytes('file://{secret_file}') AS b FROM notes"
              )) == "42501")
        check("… nor through a filesystem source table (42501)",
              sqlstate_of(lambda: alice.execute(
                  f"CREATE TABLE dropped (ref OBJECT_REF) WITH ('connector' = 'filesystem', "
                  f"'path' = 'file://{work}', 'format' = 'object_ref')"
              )) == "42501")
        check("… nor write them through a filesystem sink (42501)",
              sqlstate_of(lambda: alice.execute(
                  f"CREATE SINK spill AS SELECT id FROM notes WITH ('connector' = 'filesystem', "
                  f"'path' = 'file://{work}/spill', 'format' = 'json')"
              )) == "42501")
        check("… nor create roles (42501)",
              sqlstate_of(lambda: alice.execute("CREATE ROLE mallory SUPERUSER")) == "42501")
        check("… nor grant itself privileges (42501)",
              sqlstate_of(lambda: alice.execute("GRANT pg_read_server_files TO alice")) == "42501")

    with server.connect("bob", "bob-password") as bob:
        check("CREATE USER implies LOGIN", bob.execute("SELECT current_user").fetchone() == ("bob",))
    check("a role without LOGIN cannot log in", login_fails(server, "carol", "carol-password"))
    check("a wrong password is refused", login_fails(server, "alice", "wrong"))
    check("an unknown user is refused", login_fails(server, "nobody", "alice-password"))

    with server.connect("admin", "admin-password") as admin:
        admin.execute("GRANT pg_read_server_files TO alice")
        admin.execute("ALTER ROLE bob WITH PASSWORD 'new-bob-password'")
    with server.connect("alice", "alice-password") as alice:
        check("GRANT pg_read_server_files lets the role read server files",
              alice.execute(read_secret).fetchone() == (11,))
    check("after ALTER ROLE … PASSWORD the old password is refused",
          login_fails(server, "bob", "bob-password"))
    server.connect("bob", "new-bob-password").close()

    # Roles, passwords and grants live in the data directory.
    server.stop()
    server.start()
    with server.connect("alice", "alice-password") as alice:
        check("roles and grants survive a restart", alice.execute(read_secret).fetchone() == (11,))
    with server.connect("admin", "admin-password") as admin:
        admin.execute("REVOKE pg_read_server_files FROM alice")
        admin.execute("DROP ROLE alice")
        check("DROP ROLE of a missing role is 42704",
              sqlstate_of(lambda: admin.execute("DROP ROLE alice")) == "42704")
        admin.execute("DROP ROLE IF EXISTS alice")
    check("a dropped role cannot log in", login_fails(server, "alice", "alice-password"))
    check("the server still serves",
          server.connect("admin", "admin-password").execute("SELECT 1").fetchone() == (1,))


if __name__ == "__main__":
    main()
