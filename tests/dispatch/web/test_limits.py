"""The web view's limits, in process: failed logins per account and per address, request
bodies, query ranges. With a real server and sockets: tests/dispatch/web/test_served_limits.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from dispatch.settings import WebSettings
from tests.dispatch.web.access import HOST, ORIGIN, PASSWORD, WebRoom, web_room


def test_failed_logins_are_limited_per_account_then_per_address(tmp_path: Path) -> None:
    settings = WebSettings(allowed_hosts=[HOST], login_failures_per_account=3,
                           login_failures_per_address=5)
    with web_room(tmp_path, settings) as room:
        client = room.client()

        def attempt(username: str, password: str = "not the password") -> httpx.Response:
            return client.post("/api/session", json={"username": username,
                                                     "password": password})

        assert [attempt("vera").status_code for _ in range(3)] == [401, 401, 401]
        refused = attempt("vera", PASSWORD)
        assert refused.status_code == 429, "even the right password waits out the limit"
        assert int(refused.headers["Retry-After"]) > 0
        assert "too many failed logins" in refused.json()["detail"]
        # Another account from the same address: two more failures fill the address's five.
        assert attempt("ana", PASSWORD).status_code == 200
        assert [attempt("sam").status_code for _ in range(2)] == [401, 401]
        assert attempt("root", PASSWORD).status_code == 429


def test_a_body_over_the_limit_is_refused_before_it_is_read(room: WebRoom) -> None:
    operator = room.login("ana")
    # Content-Length says 100 MB: refused on the headers alone, nothing sent is read.
    declared = operator.post("/api/plans/1/reject", content=b"{}",
                             headers={"Content-Length": str(100 * 2**20)})
    assert declared.status_code == 413
    assert "over 65536 bytes" in declared.json()["detail"]
    # No length given (chunked): the bytes are counted and reading stops at the bound.
    read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(100 * 16):  # 100 MB in 64 KiB chunks, if anyone read them all
            read += 65_536
            yield b"x" * 65_536

    started = time.monotonic()
    answer = asyncio.run(_post_stream(room, chunks()))
    assert answer.status_code == 413
    assert "x" * 100 not in answer.text, "the body is not echoed"
    assert read <= 4 * 65_536, f"{read} bytes read of a refused body"
    assert time.monotonic() - started < 5


async def _post_stream(room: WebRoom, body: AsyncIterator[bytes]) -> httpx.Response:
    transport = httpx.ASGITransport(app=room.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        return await client.post("/api/session", content=body,
                                 headers={"Content-Type": "application/json"})


def test_ranges_outside_the_stores_years_are_refused_with_a_reason(room: WebRoom) -> None:
    viewer = room.login("vera")
    for path in ("/api/readings", "/api/forecast"):
        for start, end in (("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
                           ("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z"),
                           ("0001-01-01T00:00:00+14:00", "0001-01-01T01:00:00+14:00")):
            answer = viewer.get(path, params={"start": start, "end": end})
            assert answer.status_code == 422, (path, start, answer.text)
            assert "between 1970 and 2200" in answer.json()["detail"]
