"""A local HTTP receiver for webhooks: records every POST, answers 200 or what a test asks for, can
hold its answers (a slow receiver), and can be down (nothing listening on its port) and come up later."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.deadline import Deadline


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[str, dict[str, str], Any]] = []  # (path, headers, body)
        self.status_for: Callable[[str, Any], int] = lambda path, body: 200
        self.json_for_get: dict[str, Any] = {}
        self.released = threading.Event()
        self.released.set()  # answers at once unless a test holds them
        self.server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver.received.append((self.path, dict(self.headers), body))
                receiver.released.wait(60)
                code = receiver.status_for(self.path, body)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                answer = json.dumps(receiver.json_for_get.get(self.path, {})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [body for got, _, body in self.received if path is None or got == path]

    def headers(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [headers for got, headers, _ in self.received if got == path]

    def wait_for(self, what: str, probe: Callable[[], bool], timeout: float = 90.0) -> None:
        deadline = Deadline(timeout)
        while not deadline.expired():
            if probe():
                return
            time.sleep(0.2)
        raise AssertionError(f"the receiver never saw {what}; it got {self.received!r}")
