"""The operations endpoint of a service: Prometheus ``/metrics`` and ``/health``.

``/health`` answers 200 when the service is ready (``estate.readiness``) and 503 when it is
not, with a JSON body naming each check, so an orchestrator, a load balancer, the demo and
the tests all wait on the same signal. ``wait_healthy`` is that wait, with a deadline.

The standard library's threading HTTP server is enough for two read-only paths scraped a
few times a minute; a web framework here would only add start-up time and memory. A
service with a web framework of its own (the web view) answers ``Readiness`` on a route of
its own instead.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from estate.readiness import Readiness

log = logging.getLogger(__name__)


class OpsServer:
    """Serves ``/metrics`` (of ``registry``, the process's default one unless given) and
    ``/health`` (``readiness``) on ``host:port`` (0: a free port) in a thread of its own."""

    def __init__(self, host: str, port: int, readiness: Readiness, *,
                 registry: CollectorRegistry = REGISTRY, name: str = "ops-http") -> None:

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path == "/health":
                    verdict = readiness.verdict()
                    self._answer(200 if verdict.ready else 503,
                                 orjson.dumps(verdict.as_dict(), default=str),
                                 "application/json")
                else:
                    self._answer(404, b'{"detail":"not found"}', "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_healthy(url: str, timeout_s: float, interval_s: float = 0.1) -> dict[str, Any] | None:
    """Poll ``url`` (a ``/health``) until it answers 200; its body then, or None if it did
    not within ``timeout_s`` (the service not up yet, or not ready)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = httpx.get(url, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            if answer.status_code == 200:
                body: dict[str, Any] = answer.json()
                return body
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() + interval_s > deadline:
            return None
        time.sleep(interval_s)
