"""The web view's limits over real sockets, served by uvicorn: a 100 MB body is refused
early with the process's memory bounded, and live streams are limited per session."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from dispatch.settings import WebSettings
from tests.conftest import served
from tests.dispatch.web.access import PASSWORD, web_room

pytestmark = pytest.mark.servers

CHUNK = b"x" * 2**20


def _rss_bytes() -> int:
    """This process's resident memory (the server runs in one of its threads)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def served_room(tmp_path: Path) -> Iterator[str]:
    settings = WebSettings(allowed_hosts=["127.0.0.1"], max_streams_per_session=2)
    with web_room(tmp_path, settings) as room, served(room.app) as url:
        yield url


def _send_100_mb(url: str, declare_length: bool) -> tuple[int, str, int]:
    """Send up to 100 MB as the body of a login; (status, answer, bytes sent)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    connection.putrequest("POST", "/api/session")
    connection.putheader("Content-Type", "application/json")
    if declare_length:
        connection.putheader("Content-Length", str(100 * len(CHUNK)))
    else:
        connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    sent = 0
    try:
        for _ in range(100):
            data = CHUNK if declare_length else b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
            connection.send(data)
            sent += len(CHUNK)
    except OSError:
        pass  # the server answered and closed: the rest is never read
    answer = connection.getresponse()
    body = answer.read().decode()
    connection.close()
    return answer.status, body, sent


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_a_100_mb_body_is_refused_early_and_memory_stays_bounded(
        served_room: str, declare_length: bool) -> None:
    before = _rss_bytes()
    started = time.monotonic()
    status, body, sent = _send_100_mb(served_room, declare_length)
    elapsed = time.monotonic() - started
    grown = _rss_bytes() - before
    print(f"\n100 MB body ({'declared' if declare_length else 'chunked'}): {status} after "
          f"{sent / 2**20:.0f} MB sent in {elapsed:.2f} s; RSS grew {grown / 2**20:.1f} MB")
    assert status == 413
    assert "x" * 100 not in body
    assert grown < 30 * 2**20, f"the server's memory grew by {grown / 2**20:.0f} MB"
    # It still answers after.
    assert httpx.get(f"{served_room}/api/health", timeout=10).status_code in {200, 503}


def test_live_streams_are_limited_per_session(served_room: str) -> None:
    with httpx.Client(base_url=served_room, timeout=10) as client:
        assert client.post("/api/session", json={"username": "vera", "password": PASSWORD}
                           ).status_code == 200
        with client.stream("GET", "/api/live/stream") as first, \
                client.stream("GET", "/api/live/stream") as second:
            assert (first.status_code, second.status_code) == (200, 200)
            lines = first.iter_lines()  # kept: dropping it would close the stream
            assert next(lines).startswith("event: live")
            with client.stream("GET", "/api/live/stream") as third:
                assert third.status_code == 429
                assert "at most 2 live streams per session" in third.read().decode()
        # Closed streams give their slots back (once the server sees them go).
        deadline = time.monotonic() + 10
        while True:
            with client.stream("GET", "/api/live/stream") as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        assert again.status_code == 200
    # Another session has slots of its own.
    with httpx.Client(base_url=served_room, timeout=10) as other:
        other.post("/api/session", json={"username": "ana", "password": PASSWORD})
        with other.stream("GET", "/api/live/stream") as own:
            assert own.status_code == 200
