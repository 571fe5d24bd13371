"""The operations endpoint of a service: Prometheus ``/metrics`` and ``/health``.

``/health`` answers 200 when the service is ready and 503 when it is not, with a JSON body
naming each check, so an orchestrator, a load balancer, the demo and the tests all wait on
the same signal. Readiness is either an ``estate.readiness.Readiness`` (named checks) or a
function answering ``(ok, body)`` (the simulator, the demo's supervisor). ``extra`` paths
serve JSON documents of their own (the supervisor's ``/status``). ``wait_healthy`` is the
wait on ``/health``, with a deadline.

The standard library's threading HTTP server is enough for a few read-only paths scraped a
few times a minute; a web framework here would only add start-up time and memory. A
service with a web framework of its own (the web view) answers ``Readiness`` on a route of
its own instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from estate.readiness import Readiness

log = logging.getLogger(__name__)

HealthFunction = Callable[[], tuple[bool, dict[str, Any]]]
DocumentFunction = Callable[[], dict[str, Any]]


def _health_function(health: Readiness | HealthFunction) -> HealthFunction:
    if isinstance(health, Readiness):
        readiness = health

        def verdict() -> tuple[bool, dict[str, Any]]:
            answer = readiness.verdict()
            return answer.ready, answer.as_dict()

        return verdict
    return health


class OpsServer:
    """Serves ``/metrics`` (of ``registry``, the process's default one unless given),
    ``/health`` (``health``) and the ``extra`` documents on ``host:port`` (0: a free port)
    in a thread of its own."""

    def __init__(self, host: str, port: int, health: Readiness | HealthFunction, *,
                 registry: CollectorRegistry = REGISTRY, name: str = "ops-http",
                 extra: Mapping[str, DocumentFunction] | None = None) -> None:
        documents = dict(extra or {})
        healthy = _health_function(health)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    ok, body = healthy()
                    self._answer(200 if ok else 503, orjson.dumps(body, default=str),
                                 "application/json")
                elif path in documents:
                    self._answer(200, orjson.dumps(documents[path](), default=str),
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
        self._server.daemon_threads = True
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
