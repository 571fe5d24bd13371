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
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())
