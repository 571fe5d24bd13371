"""What every request passes before a route sees it (pure ASGI middlewares, so a refused
request costs no more than its headers): the size of its body, where a state change
comes from, and the security headers on every answer. Allowed hosts are Starlette's
``TrustedHostMiddleware`` (``dispatch.web.app``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

# Scripts only from the view itself; styles too, plus inline ones (Swagger UI and ReDoc
# set style attributes); no framing by anyone (frame-ancestors, and X-Frame-Options for
# older browsers); ReDoc renders in a blob: worker.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


async def _refuse(send: Send, status: int, detail: str,
                  extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every answer, and ``Cache-Control: no-store`` to the
    API's (they hold live data and per-user answers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = not str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() not in {k for k, _ in SECURITY_HEADERS}]
                headers += SECURITY_HEADERS
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413: at once if its Content-Length
    says so, otherwise as soon as the bytes read pass the bound (the route then sees a
    disconnected client). The body is never read further, kept or echoed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body is over {self.max_bytes} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _refuse(send, 413, detail)
            return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await _refuse(send, 413, detail)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class OriginCheck:
    """Refuses a state change (any method but GET, HEAD, OPTIONS) that a browser says
    comes from another site: an ``Origin`` other than the view's own (the one its Host
    header names) or one of ``allowed_origins``, ``Origin: null``, or
    ``Sec-Fetch-Site: cross-site``. A request without these headers (a machine's) passes
    here; the session's CSRF token is checked with the user (``dispatch.web.auth``)."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}

    def _allowed(self, scope: Scope) -> bool:
        if _header(scope, b"sec-fetch-site") == "cross-site":
            return False
        origin = _header(scope, b"origin")
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed:
            return True
        parts = urlsplit(origin)
        host = (_header(scope, b"host") or "").lower()
        return parts.scheme in {"http", "https"} and bool(host) and parts.netloc == host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope.get("method", "GET") not in SAFE_METHODS
                and not self._allowed(scope)):
            await _refuse(send, 403, "cross-origin request refused: the Origin is not "
                                     "this view's")
            return
        await self.app(scope, receive, send)
