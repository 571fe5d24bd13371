"""A real HTTP receiver for the webhook tests: a threaded server on loopback that verifies
each delivery's signature with the ``standardwebhooks`` reference verifier, answers as the
test tells it (fail with 500, time out, drop the connection, redirect, or accept), and
records what it got."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out) before the answer: expected here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Received:
    path: str
    message_id: str
    body: dict[str, Any]
    mode: str
    at: float


@dataclass
class Receiver:
    """``secrets``: the secrets each path accepts; ``faults``: what the next requests get
    (``500``, ``503``, ``503-retry-after-N``, ``timeout``, ``drop``, ``redirect:URL``),
    then ``ok``."""

    secrets: dict[str, list[str]] = field(default_factory=dict)
    hold_s: float = 1.0
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    faults_served: int = 0
    _faults: deque[str] = field(default_factory=deque)
    _outage: tuple[float, list[str]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def fail_next(self, modes: Iterable[str]) -> None:
        with self._lock:
            self._faults.extend(modes)

    def fail_for(self, seconds: float, modes: list[str]) -> None:
        """An outage: for ``seconds`` from now every request gets the next of ``modes``."""
        with self._lock:
            self._outage = (time.monotonic() + seconds, list(modes))

    def faults_left(self) -> int:
        with self._lock:
            return len(self._faults)

    def _mode(self) -> str:
        with self._lock:
            if self._outage is not None and time.monotonic() < self._outage[0]:
                modes = self._outage[1]
                mode = modes[self.faults_served % len(modes)]
            else:
                mode = self._faults.popleft() if self._faults else "ok"
            self.faults_served += mode != "ok"
            return mode

    def _verify(self, path: str, body: bytes, headers: dict[str, str]) -> str | None:
        for secret in self.secrets.get(path, []):
            try:
                Webhook(secret).verify(body, headers)
                return None
            except WebhookVerificationError as exc:
                error = str(exc)
        return error if self.secrets.get(path) else "no secret for this path"

    def accepted(self, path: str | None = None) -> dict[str, dict[str, Any]]:
        """Bodies by webhook-id, first arrival each (deduplicated as a receiver would)."""
        with self._lock:
            seen: dict[str, dict[str, Any]] = {}
            for r in self.received:
                if (path is None or r.path == path) and r.message_id not in seen:
                    seen[r.message_id] = r.body
            return seen

    def arrivals(self, path: str) -> list[str]:
        with self._lock:
            return [r.message_id for r in self.received if r.path == path]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                problem = receiver._verify(self.path, body, headers)
                if problem is not None:
                    with receiver._lock:
                        receiver.rejected.append(problem)
                    self._answer(401, problem.encode())
                    return
                mode = receiver._mode()
                if mode == "drop":
                    self.close_connection = True
                    return
                if mode.startswith("redirect:"):
                    self.send_response(307)
                    self.send_header("location", mode.split(":", 1)[1])
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if mode in ("500", "503"):
                    self._answer(int(mode), b"receiver down")
                    return
                if mode == "500-big":  # an answer far larger than anyone should read
                    self._answer(500, b"x" * 5_000_000)
                    return
                if mode.startswith("503-retry-after-"):
                    self._answer(503, b"busy", retry_after=mode.rsplit("-", 1)[1])
                    return
                with receiver._lock:
                    receiver.received.append(Received(self.path, headers["webhook-id"],
                                                      orjson.loads(body), mode,
                                                      time.monotonic()))
                if mode == "timeout":
                    time.sleep(receiver.hold_s)
                self._answer(204, b"")

            def _answer(self, status: int, body: bytes, retry_after: str | None = None,
                        ) -> None:
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                if retry_after is not None:
                    self.send_header("retry-after", retry_after)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
