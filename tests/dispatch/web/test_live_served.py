"""The live feed over real sockets: readings published on the real Mosquitto reach two
open streams of the view served by uvicorn as the same event, and a client that stops
reading is dropped by the view without its memory growing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from adapters.mqtt import MqttConnection
from dispatch.settings import WebSettings
from dispatch.web.live import LiveState
from estate.ports import InboundMessage
from estate.readings import Reading
from estate.senml import encode_readings
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId, subscription
from tests.conftest import served
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import PASSWORD, WebRoom, web_room
from tests.dispatch.web.test_served_limits import _rss_bytes

pytestmark = pytest.mark.servers


@dataclass
class Served:
    url: str
    room: WebRoom
    mqtt: MqttConnection


@pytest.fixture
def served_live(tmp_path: Path, mqtt_settings: MqttSettings) -> Iterator[Served]:
    """The view served by uvicorn, its live state fed by the real broker as in
    ``dispatch.__main__.build_web``."""
    settings = WebSettings(allowed_hosts=["127.0.0.1"], max_streams_per_session=4)
    with web_room(tmp_path, settings) as room, served(room.app) as url:
        mqtt = MqttConnection(mqtt_settings, f"test-live-{time.monotonic_ns()}")
        for channel in (Channel.TELEMETRY, Channel.STATUS):
            mqtt.subscribe(subscription(channel, estate=SPEC.id), room.live.handle, qos=0)
        mqtt.connect()
        assert mqtt.wait_subscribed(10)
        try:
            yield Served(url, room, mqtt)
        finally:
            mqtt.close()


def _pack(facility: str, device: str, value: float) -> tuple[str, bytes]:
    ident = DeviceId(SPEC.id, facility, device)
    reading = Reading(SPEC.id, facility, device, "power", "", value,
                      time.time_ns() // 1_000_000)
    return ident.topic(Channel.TELEMETRY), encode_readings(ident, [reading])


def _login(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    assert client.post("/api/session", json={"username": "vera", "password": PASSWORD}
                       ).status_code == 200
    return client


def _watch(client: httpx.Client, marker: str, found: dict[str, str],
           name: str, opened: threading.Event) -> None:
    """Read the stream until an event's data holds ``marker``; keep that data."""
    with client.stream("GET", "/api/live/stream", timeout=30) as answer:
        assert answer.status_code == 200
        opened.set()
        for line in answer.iter_lines():
            if line.startswith("data:") and marker in line:
                found[name] = line
                return


def test_two_streams_get_the_same_delta_from_the_broker(served_live: Served) -> None:
    found: dict[str, str] = {}
    clients = [_login(served_live.url), _login(served_live.url)]
    opened = [threading.Event(), threading.Event()]
    readers = [threading.Thread(target=_watch, args=(c, "4242.5", found, str(i), o))
               for i, (c, o) in enumerate(zip(clients, opened, strict=True))]
    for reader in readers:
        reader.start()
    assert all(o.wait(10) for o in opened)
    topic, payload = _pack("textile", "main", 4242.5)
    served_live.mqtt.publish(topic, payload, qos=1).wait(5)
    for reader in readers:
        reader.join(15)
    assert set(found) == {"0", "1"}, found
    assert found["0"] == found["1"]  # one delta, encoded once, for both
    health = httpx.get(f"{served_live.url}/api/health", timeout=10).json()
    assert health["live"]["sent"] >= 2
    for client in clients:
        client.close()


def _stuck_stream(url: str, cookie: str) -> socket.socket:
    """A client that asks for the stream and never reads: a small receive buffer, so
    the view's writes back up into its own queue soon."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname or "", parts.port or 80))
    sock.sendall(f"GET /api/live/stream HTTP/1.1\r\nHost: {parts.hostname}\r\n"
                 f"Cookie: estate_session={cookie}\r\nAccept: text/event-stream\r\n\r\n"
                 .encode())
    return sock


def _feed(live: LiveState, tick: int, devices: int) -> None:
    for device in range(devices):
        topic, payload = _pack("textile", f"m{device:04d}", float(tick))
        live.handle(InboundMessage(topic, payload, 0, False, 0))


def test_a_client_that_stops_reading_is_dropped_and_memory_stays_bounded(
        served_live: Served) -> None:
    client = _login(served_live.url)
    cookie = client.cookies["estate_session"]
    sock = _stuck_stream(served_live.url, cookie)
    health_url = f"{served_live.url}/api/health"
    deadline = time.monotonic() + 10
    while httpx.get(health_url, timeout=10).json()["live"]["streams"] < 1:
        assert time.monotonic() < deadline, "the stream never opened"
        time.sleep(0.05)
    before = _rss_bytes()
    # 500 meters changing four times a second: about 60 KB a delta, never read.
    deadline = time.monotonic() + 60
    tick = 0
    while httpx.get(health_url, timeout=10).json()["live"]["dropped"] < 1:
        assert time.monotonic() < deadline, "the stuck stream was never dropped"
        tick += 1
        _feed(served_live.room.live, tick, 500)
        time.sleep(0.1)
    dropped_at = tick
    # Keep changing for as long again: nothing more is queued for it.
    for _ in range(dropped_at):
        tick += 1
        _feed(served_live.room.live, tick, 500)
        time.sleep(0.02)
    grown = _rss_bytes() - before
    health = httpx.get(health_url, timeout=10).json()["live"]
    print(f"\nstuck stream dropped after {dropped_at} rounds of 500 changes; RSS grew "
          f"{grown / 2**20:.1f} MB; {health}")
    assert health["streams"] == 0
    assert grown < 40 * 2**20, f"the view's memory grew by {grown / 2**20:.0f} MB"
    # Reading now, the client finds the notice at the end of what was queued for it.
    sock.settimeout(10)
    received = b""
    while b"event: dropped" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    assert b"event: dropped" in received
    assert b"reconnect" in received
    sock.close()
    client.close()
