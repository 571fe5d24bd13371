"""The small HTTP endpoint monitoring scrapes: Prometheus ``/metrics`` and ``/health``.

For the services that have no web framework of their own (the simulator, the demo's
supervisor). The standard library's threading HTTP server is enough for a few read-only
paths scraped a few times a minute; a framework would only add start-up time and memory.

``/health`` answers 200 with a JSON body when the health function says healthy, 503 with
the same body otherwise; ``extra`` paths serve JSON documents of their own (the
supervisor's ``/status``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

HealthFunction = Callable[[], tuple[bool, dict[str, Any]]]
DocumentFunction = Callable[[], dict[str, Any]]


class OpsServer:
    """Serves ``/metrics`` from ``registry`` and ``/health`` from ``health`` in a thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 health: HealthFunction, *, name: str = "ops-http",
                 extra: Mapping[str, DocumentFunction] | None = None) -> None:
        documents = dict(extra or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    ok, body = health()
                    self._answer(200 if ok else 503, orjson.dumps(body), "application/json")
                elif path in documents:
                    self._answer(200, orjson.dumps(documents[path]()), "application/json")
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
