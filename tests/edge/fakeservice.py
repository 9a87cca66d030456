"""Test doubles for sync: a TCP proxy that cuts the connection, and a small fake service.

`CutProxy` sits between the edge client and a service (the real `khet serve` or the fake) and drops
every connection once a set number of request bytes has passed: a network that dies mid-transfer.
`FakeService` follows the upload/flight contract of the service, in memory; it is used to inject
faults where the real service cannot be made to misbehave, never instead of the real-service test.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CutProxy:
    """Forward loopback TCP to `upstream`; after `budget` client bytes, drop and refuse all."""

    def __init__(
        self, upstream_port: int, budget: int | None = None, cut_responses_after: int | None = None
    ) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.budget = budget  # client -> server bytes allowed in all
        self.response_budget = cut_responses_after  # server -> client bytes allowed in all
        self.sent = 0
        self.received = 0
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.cut.set()
        self._sock.close()
        self._drop()

    def _drop(self) -> None:
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if upstream:
                        room = None if self.budget is None else self.budget - self.sent
                    else:
                        rb = self.response_budget
                        room = None if rb is None else rb - self.received
                    if room is not None and room < len(data):
                        data = data[: max(room, 0)]
                        self.cut.set()
                    if upstream:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
                if data:
                    dst.sendall(data)
                if self.cut.is_set():
                    break
        except OSError:
            pass
        if self.cut.is_set():
            self._drop()
        else:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class DropProxy:
    """Forward loopback TCP to `upstream`, dropping each connection once `every` client bytes
    have passed on it; new connections are taken (a link that keeps dropping, never down)."""

    def __init__(self, upstream_port: int, every: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.every = every
        self.forwarded = 0  # client -> server bytes that crossed
        self.put_body = 0  # of which bodies of PUT requests (upload chunks)
        self.drops = 0
        self._lock = threading.Lock()
        self._closed = False
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                continue
            pair = {"left": self.every, "cut": False, "head": b"", "body": 0, "put": False}
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, up, pair, (client, server)), daemon=True
                ).start()

    def _count(self, pair: dict, data: bytes) -> None:
        """Follow the HTTP/1.1 requests on a connection: how many body bytes of PUTs crossed."""
        while data:
            if pair["body"]:
                n = min(pair["body"], len(data))
                if pair["put"]:
                    self.put_body += n
                pair["body"] -= n
                data = data[n:]
                continue
            pair["head"] += data
            data = b""
            if b"\r\n\r\n" in pair["head"]:
                head, data = pair["head"].split(b"\r\n\r\n", 1)
                pair["head"] = b""
                pair["put"] = head.startswith(b"PUT ")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        pair["body"] = int(line.split(b":", 1)[1])

    def _pump(self, src, dst, upstream: bool, pair: dict, both) -> None:
        try:
            while not pair["cut"]:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    with self._lock:
                        if len(data) >= pair["left"]:
                            data = data[: pair["left"]]
                            pair["cut"] = True
                            self.drops += 1
                        pair["left"] -= len(data)
                        self.forwarded += len(data)
                        self._count(pair, data)
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        client, server = both
        try:  # the server gets what crossed, then the end of the stream (a FIN, not a reset)
            server.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        for s in both:  # drop (or end) the connection on both sides
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class FakeService:
    """The upload and flight endpoints of the service contract, in memory."""

    def __init__(self, token: str = "t0ken") -> None:  # noqa: C901 - one nested HTTP handler, a branch per endpoint
        self.token = token
        self.uploads: dict[str, dict] = {}
        self.flights: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.appended = 0
        self.fields = {"1", "7"}
        self.reject: set[str] = set()  # client_ids whose flight is refused (422)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                data = b""
                while len(data) < n:
                    chunk = self.rfile.read(n - len(data))
                    if not chunk:
                        raise ConnectionError("client went away mid-body")
                    data += chunk
                return data

            def _auth(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._send(401, {"error": "unauthorized", "message": "bad token"})
                    return False
                return True

            def do_GET(self):  # noqa: N802
                fake.requests.append(("GET", self.path))
                if not self._auth():
                    return
                m = re.fullmatch(r"/api/v1/uploads/(\w+)", self.path)
                if not m or m.group(1) not in fake.uploads:
                    return self._send(404, {"error": "not_found"})
                u = fake.uploads[m.group(1)]
                return self._send(200, fake.public(u) | {"filename": u["filename"]})

            def do_POST(self):  # noqa: N802
                fake.requests.append(("POST", self.path))
                try:
                    body = json.loads(self._body() or b"{}")
                except ConnectionError:
                    return
                if not self._auth():
                    return
                if self.path == "/api/v1/uploads":
                    key = (body["filename"], body["size"], body["sha256"])
                    for u in fake.uploads.values():
                        if u["key"] == key:
                            return self._send(200, fake.public(u))
                    uid = f"u{len(fake.uploads) + 1}"
                    fake.uploads[uid] = {
                        "id": uid,
                        "key": key,
                        "filename": body["filename"],
                        "size": body["size"],
                        "sha256": body["sha256"],
                        "data": bytearray(),
                    }
                    return self._send(201, fake.public(fake.uploads[uid]))
                m = re.fullmatch(r"/api/v1/fields/(\w+)/flights", self.path)
                if m:
                    if m.group(1) not in fake.fields:
                        return self._send(404, {"error": "not_found", "message": "no such field"})
                    if body["client_id"] in fake.reject:
                        return self._send(422, {"error": "bad_input", "message": "bad summary"})
                    k = (m.group(1), body["client_id"])
                    if k in fake.flights:
                        return self._send(200, fake.flights[k])
                    ids = list(body["uploads"]) + list(body["results"].values())
                    if any(
                        i not in fake.uploads or not fake.complete(fake.uploads[i]) for i in ids
                    ):
                        return self._send(
                            422, {"error": "bad_input", "message": "upload incomplete"}
                        )
                    fake.flights[k] = {"id": len(fake.flights) + 1, "field": m.group(1), **body}
                    return self._send(201, fake.flights[k])
                return self._send(404, {"error": "not_found"})

            def do_PUT(self):  # noqa: N802
                fake.requests.append(("PUT", self.path))
                m = re.fullmatch(r"/api/v1/uploads/(\w+)", self.path)
                try:
                    data = self._body()
                except ConnectionError:
                    return
                if not self._auth():
                    return
                if not m or m.group(1) not in fake.uploads:
                    return self._send(404, {"error": "not_found"})
                u = fake.uploads[m.group(1)]
                r = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", self.headers.get("Content-Range", ""))
                start = int(r.group(1))
                if start < len(u["data"]):
                    return self._send(200, fake.public(u))
                if start > len(u["data"]):
                    return self._send(409, {"error": "conflict", "offset": len(u["data"])})
                u["data"] += data
                fake.appended += len(data)
                return self._send(200, fake.public(u))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def complete(self, u: dict) -> bool:
        return len(u["data"]) == u["size"] and hashlib.sha256(u["data"]).hexdigest() == u["sha256"]

    def public(self, u: dict) -> dict:
        return {
            "id": u["id"],
            "offset": len(u["data"]),
            "size": u["size"],
            "complete": self.complete(u),
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
