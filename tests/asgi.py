"""Requests to an ASGI app in process, without serving it on a port: for fast-tier tests of
the web view's answers (the real-server tests serve it with uvicorn, ``tests.conftest``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


def request(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to ``app`` through httpx's ASGI transport."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://localhost") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())


class AppClient:
    """A client of ``app`` in process that keeps its cookies and default headers between
    requests (a browser's session, without a port). Answers are read whole, so it is not
    for endless streams; close it at the end."""

    def __init__(self, app: Any, base_url: str = "http://localhost",
                 headers: dict[str, str] | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url=base_url, headers=headers)

    @property
    def headers(self) -> httpx.Headers:
        return self._client.headers

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()
