"""The ingest service's small HTTP endpoint: Prometheus ``/metrics`` and ``/health``.

The standard library's threading HTTP server is enough for two read-only paths scraped a
few times a minute; a web framework here would only add start-up time and memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

HealthFunction = Callable[[], tuple[bool, dict[str, Any]]]


class OpsServer:
    def __init__(self, host: str, port: int, health: HealthFunction) -> None:
        outer_health = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._answer(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/health":
                    ok, body = outer_health()
                    self._answer(200 if ok else 503, orjson.dumps(body), "application/json")
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
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="ingest-http", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
