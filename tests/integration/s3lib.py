"""Helpers shared by the integration tests that talk to S3: the local S3 server (tools/s3rver.sh),
Debian's /usr/bin/aws as the independent client, random test files, and two proxies that sit
between our uploader and the server.

What it is for: test_s3_client.py (the S3 client through its CLI) and test_durable.py (the
uploader of the durable tier, through real programs under the shim) need the same server, the
same checker and the same fault injection.

DESIGN: everything here runs in the pytest process.  The server is started on port 0 with a
scratch data dir and prints "READY <port>".  `FaultProxy` is an HTTP/1.1 proxy (one thread per
connection) that replays a scripted list of faults, then forwards each request verbatim (Host
header included, so the server's signature check still passes); it can also throttle request
bodies and records every request (start, end, status, body bytes) so a test can tell what went
through and in which order.  `TcpProxy` relays raw bytes (optionally throttled and counted) or,
as a black hole, accepts connections and never answers.
"""

import hashlib
import http.client
import json
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
S3RVER = REPO / "tools" / "s3rver.sh"
AWS = "/usr/bin/aws"
MiB = 1 << 20
# S3rver's built-in credentials (tools/s3rver/start.js)
ACCESS_KEY = SECRET_KEY = "S3RVER"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def random_bytes(size, seed):
    """`size` pseudo-random bytes (deterministic per seed, fast)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    i = 0
    while len(out) < size:
        out += hashlib.sha256(block[:64] + i.to_bytes(8, "little")).digest() + block[32:65536]
        i += 1
    return bytes(out[:size])


def write_random(path, size, seed):
    """A file of `size` pseudo-random bytes (deterministic per seed, fast); returns path."""
    Path(path).write_bytes(random_bytes(size, seed))
    return path


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- the local server --------------------------------------------------------------------------

def start_s3rver(datadir, buckets, what="the local S3 server"):
    """Start tools/s3rver.sh on a free port with `buckets`; returns (Popen, port).  Raises
    RuntimeError with the server's stderr when it does not come up."""
    proc = subprocess.Popen([str(S3RVER), str(datadir), *buckets], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()  # blocks until READY or exit
    if not line.startswith("READY "):
        proc.kill()
        err = proc.stderr.read()
        raise RuntimeError(f"{what} did not start: {line!r} {err[-2000:]}")
    return proc, int(line.split()[1])


def stop_s3rver(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class S3Server:
    """A running local S3 server, the environment that reaches it, and /usr/bin/aws on it."""

    def __init__(self, workdir, buckets):
        self.workdir = Path(workdir)
        (self.workdir / "home").mkdir(exist_ok=True)
        self.proc, self.port = start_s3rver(self.workdir / "data", buckets)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self):
        stop_s3rver(self.proc)

    def aws_env(self):
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C",
                "HOME": str(self.workdir / "home"), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "AWS_PAGER": ""}

    def aws(self, *args, timeout=120, check=True):
        """/usr/bin/aws --endpoint-url <server> args...; asserts success unless check=False."""
        r = subprocess.run([AWS, "--endpoint-url", self.endpoint, *map(str, args)],
                           env=self.aws_env(), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"aws {args} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r

    def keys(self, bucket, prefix):
        """{key: size} of every object under prefix (independent client, all pages)."""
        r = self.aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix,
                     "--output", "json")
        if not r.stdout.strip():
            return {}
        return {o["Key"]: o["Size"] for o in json.loads(r.stdout).get("Contents", [])}

    def download(self, url, dest):
        """aws s3 cp --recursive url dest; returns dest."""
        self.aws("s3", "cp", "--recursive", "--quiet", url, str(dest))
        return Path(dest)


# --- fault-injecting HTTP proxy ----------------------------------------------------------------

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message></Error>')


def request_kind(command, path):
    """"complete" (POST ?uploadId=), "part" (UploadPart) or "other"."""
    if command == "POST" and "uploadId=" in path:
        return "complete"
    if command == "PUT" and "partNumber=" in path:
        return "part"
    return "other"


class FaultProxy:
    """HTTP proxy on 127.0.0.1 that applies scripted faults, then forwards to `upstream`.

    faults: list of (match, action) consumed in order; match is "any", "part" (UploadPart),
    "complete" (POST ?uploadId) and the first request that matches the head of the list gets
    the action: "503" (SlowDown), "500", "drop" (read the request, close without a reply),
    "reset" (read half the body, then reset the connection), "stall" (hold the connection silent
    for 4 s, or "stall:<seconds>"), "corrupt" (forward with one body byte flipped),
    "complete-error:<Code>" (reply 200 with an <Error> body without forwarding).

    throttle: None, or (bytes per second, predicate(command, path)): bodies of the requests the
    predicate selects are read from the client at that rate in all (shared by all connections).

    A request whose body ends early (the client died or reset) is never forwarded.

    Records: `log` (command, path, action) per request as its headers arrive (the original
    format), `records` dicts {cmd, path, kind, action, t0, t1, status, nbytes} per request,
    `body_bytes` (request body bytes received in all)."""

    def __init__(self, upstream_port, faults, tls=None, throttle=None):
        self.faults = list(faults)
        self.lock = threading.Lock()
        self.log = []
        self.records = []
        self.body_bytes = 0
        self.throttle = throttle
        self._next_slot = time.monotonic()
        proxy = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def read_body(self, n, rec):
                if not proxy.throttle or not proxy.throttle[1](self.command, self.path):
                    body = self.rfile.read(n) if n else b""
                    proxy.count(len(body), rec)
                    return body
                rate = proxy.throttle[0]
                chunks, left = [], n
                while left:
                    c = self.rfile.read(min(left, 64 * 1024))
                    if not c:
                        break
                    chunks.append(c)
                    left -= len(c)
                    proxy.count(len(c), rec)
                    with proxy.lock:  # one shared budget: the next chunk's slot
                        now = time.monotonic()
                        slot = max(proxy._next_slot, now) + len(c) / rate
                        proxy._next_slot = slot
                    time.sleep(max(0.0, slot - now))
                return b"".join(chunks)

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                kind = request_kind(self.command, self.path)
                action = None
                rec = {"cmd": self.command, "path": self.path, "kind": kind, "action": None,
                       "t0": time.monotonic(), "t1": None, "status": None, "nbytes": 0}
                with proxy.lock:
                    if proxy.faults and proxy.faults[0][0] in ("any", kind):
                        action = proxy.faults.pop(0)[1]
                    rec["action"] = action
                    proxy.log.append((self.command, self.path, action))
                    proxy.records.append(rec)
                if action == "reset":
                    part = self.rfile.read(n // 2) if n else b""
                    proxy.count(len(part), rec)
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))  # RST on close
                    rec["t1"] = time.monotonic()
                    return
                try:
                    body = self.read_body(n, rec)
                except OSError:
                    body = b""
                if len(body) < n:
                    # The client went away mid-body (killed, reset): like any real proxy or
                    # server, never forward a truncated request.
                    self.close_connection = True
                    rec["status"], rec["t1"] = "client-gone", time.monotonic()
                    return
                if action in ("503", "500"):
                    self.reply(int(action), SLOWDOWN if action == "503" else
                               b"<Error><Code>InternalError</Code><Message>x</Message></Error>",
                               rec)
                    return
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    rec["t1"] = time.monotonic()
                    return
                if action and action.startswith("stall"):
                    time.sleep(float(action.split(":", 1)[1]) if ":" in action else 4)
                    self.close_connection = True
                    rec["t1"] = time.monotonic()
                    return
                if action and action.startswith("complete-error:"):
                    code = action.split(":", 1)[1].encode()
                    self.reply(200, b'<?xml version="1.0" encoding="UTF-8"?>\n\n<Error><Code>' +
                               code + b"</Code><Message>injected</Message></Error>", rec)
                    return
                if action == "corrupt" and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body if n else None, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                         "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                rec["status"], rec["t1"] = resp.status, time.monotonic()

            def reply(self, status, body, rec):
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                rec["status"], rec["t1"] = status, time.monotonic()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        if tls:  # (certfile, keyfile): serve https
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, n, rec):
        with self.lock:
            self.body_bytes += n
            rec["nbytes"] += n

    def snapshot(self):
        """A copy of the request records (safe to read while requests run)."""
        with self.lock:
            return [dict(r) for r in self.records]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- raw TCP proxy -----------------------------------------------------------------------------

class TcpProxy:
    """TCP proxy on 127.0.0.1.  upstream_port=None makes a black hole: it accepts connections,
    reads and discards what comes and never answers.  Otherwise bytes are relayed both ways.
    Counts connections and bytes received from clients."""

    def __init__(self, upstream_port=None):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.connections = 0
        self.bytes_in = 0
        self.closing = False
        self.socks = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.socks.append(c)
            if self.upstream_port is None:
                threading.Thread(target=self._sink, args=(c,), daemon=True).start()
            else:
                try:
                    u = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
                except OSError:
                    c.close()
                    continue
                with self.lock:
                    self.socks.append(u)
                threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
                threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _sink(self, c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self.lock:
                    self.bytes_in += len(d)
        except OSError:
            pass

    def _pipe(self, src, dst, inbound):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if inbound:
                    with self.lock:
                        self.bytes_in += len(d)
                dst.sendall(d)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.closing = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
