"""A fault-injecting HTTP proxy for an S3-API server (moto), used by
fault_check.py: it forwards every request to the server behind it and,
for the next N requests that match a method and a path substring, can

- answer an S3 error itself without forwarding (503 SlowDown, 500
  InternalError),
- forward the request and then close the connection without replying
  (the write happened, the client never heard: a lost response),
- wait a while before forwarding (the request is forwarded even if the
  client gave up meanwhile, as a store that received the whole request
  may still apply it).

Faults are set through the FaultProxy object (the proxy runs in a thread of
the test's process); every request is logged with what was done to it.
Stdlib only: http.server + http.client.
"""

import http.client
import http.server
import socket
import threading
import time

ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class Fault:
    """`action` ('error', 'drop' or 'delay') for the next `count` requests
    whose method is `method` and whose path contains `path_contains`."""

    def __init__(self, action, method, path_contains, count, status=503, delay=0.0):
        self.action, self.method, self.path_contains = action, method, path_contains
        self.count, self.status, self.delay = count, status, delay
        self.fired = 0
        self.done = 0  # requests whose handling (forwarding included) finished

    def matches(self, method, path):
        return self.fired < self.count and method == self.method and self.path_contains in path

    def __repr__(self):
        return (f"Fault({self.action} {self.method} *{self.path_contains}* "
                f"fired {self.fired}/{self.count})")


class FaultProxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.faults = []
        self.log = []  # (method, path, what was done)
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                body = self.read_body()
                fault = proxy.take(self.command, self.path)
                try:
                    if fault is not None and fault.action == "error":
                        proxy.record(self.command, self.path, f"answered {fault.status}")
                        self.reply_error(fault.status)
                        return
                    if fault is not None and fault.action == "delay":
                        time.sleep(fault.delay)
                    status, reason, headers, data = proxy.forward(self.command, self.path, self.headers, body)
                    if fault is not None and fault.action == "drop":
                        proxy.record(self.command, self.path, f"forwarded ({status}), response dropped")
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    what = f"delayed {fault.delay} s, forwarded" if fault is not None else "forwarded"
                    proxy.record(self.command, self.path, f"{what} ({status})")
                    self.send_response(status, reason)
                    for name, value in headers:
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    if self.command == "HEAD":
                        length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                        self.send_header("Content-Length", length)
                        self.end_headers()
                    else:
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True  # the client went away
                finally:
                    if fault is not None:
                        with proxy.lock:
                            fault.done += 1

            def read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length", "0") or 0)
                return self.rfile.read(length) if length else b""

            def reply_error(self, status):
                code, message = ERRORS[status]
                data = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def inject(self, action, method, path_contains, count=1, status=503, delay=0.0):
        """Adds a fault; faults are tried in the order they were added."""
        fault = Fault(action, method, path_contains, count, status, delay)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self):
        with self.lock:
            self.faults = []

    def take(self, method, path):
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    def record(self, method, path, what):
        with self.lock:
            self.log.append((method, path, what))

    def forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()
