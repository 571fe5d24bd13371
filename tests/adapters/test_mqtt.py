"""Reconnection of the paho wrapper: jittered per connection, and back after a broker
restart with its subscriptions.

The broker test runs a private Mosquitto so that it can stop and start it without
disturbing the session's broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.mqtt import InboundMessage, MqttConnection
from estate.settings import MqttSettings
from launcher.servers import Mosquitto


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_each_connection_draws_its_own_reconnect_delays() -> None:
    settings = MqttSettings(host="127.0.0.1", port=1)
    connections = [MqttConnection(settings, f"jitter-{k}") for k in range(8)]
    delays = [c.reconnect_delays_s for c in connections]
    for first, most in delays:
        assert 0.5 <= first <= 1.5
        assert 20.0 <= most <= 30.0
    # What paho itself will wait is what was drawn.
    for connection, (first, most) in zip(connections, delays, strict=True):
        client = connection._client  # the wrapper's one paho client
        assert (client._reconnect_min_delay, client._reconnect_max_delay) == (first, most)
    assert len({first for first, _ in delays}) == len(delays), "two connections in step"


def test_a_connection_comes_back_after_a_broker_restart_with_its_subscription(
        tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    settings = MqttSettings(host="127.0.0.1", port=broker.port)
    got = threading.Event()

    def handle(message: InboundMessage) -> None:
        if message.payload == b"after":
            got.set()

    listener = MqttConnection(settings, f"listen-{uuid.uuid4().hex[:8]}", on_message=handle)
    listener.subscribe("jitter/test", qos=1)
    try:
        listener.connect()
        assert listener.wait_subscribed(30)
        broker.stop()
        assert wait_until(lambda: not listener.connected), "the loss was noticed"
        assert not listener.subscribed
        broker.start()
        # Subscribed again, not only connected: publishing after CONNACK and before the
        # SUBACK could be lost to us.
        assert listener.wait_subscribed(60), "subscribed again after the restart"
        assert listener.connected
        sender = MqttConnection(settings, f"send-{uuid.uuid4().hex[:8]}")
        sender.connect()
        sender.publish("jitter/test", b"after", qos=1).wait_for_publish(10)
        sender.close()
        assert got.wait(20), "the subscription was restored on reconnection"
    finally:
        listener.close()
        broker.stop()


def test_one_read_takes_every_message_that_has_arrived(mqtt_settings: MqttSettings) -> None:
    """The network thread reads all waiting packets per wake-up, not one (see _Client)."""
    topic = f"burst/{uuid.uuid4().hex[:8]}"
    received: list[bytes] = []
    # The wrapper's paho client, driven by hand here so that the reads can be counted.
    client = MqttConnection(mqtt_settings, f"burst-{uuid.uuid4().hex[:8]}")._client
    client.on_message = lambda _client, _userdata, message: received.append(message.payload)
    client.connect(mqtt_settings.host, mqtt_settings.port)
    while not client.is_connected():
        client.loop(0.1)
    client.subscribe(topic, qos=0)
    client.loop(0.5)  # the SUBACK
    sender = MqttConnection(mqtt_settings, f"burst-pub-{uuid.uuid4().hex[:8]}")
    sender.connect()
    try:
        for k in range(50):
            sender.publish(topic, str(k).encode(), qos=1).wait_for_publish(5)
        time.sleep(0.3)  # all 50 are in our socket's buffer now
        counting = _CountingSocket(client._sock)
        client._sock = counting  # type: ignore[assignment]
        client.loop_read()
        assert received == [str(k).encode() for k in range(50)]
        # In large pieces: not three reads a packet as paho does on its own.
        assert 1 <= counting.reads <= 3
        client._sock = counting.sock
    finally:
        sender.close()
        client.disconnect()


class _CountingSocket:
    """A socket that counts its reads."""

    def __init__(self, sock: Any) -> None:
        self.sock, self.reads = sock, 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        data: bytes = self.sock.recv(size)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_subscribed_means_what_is_published_next_arrives(mqtt_settings: MqttSettings) -> None:
    got: list[bytes] = []
    listener = MqttConnection(mqtt_settings, f"sub-{uuid.uuid4().hex[:8]}",
                              on_message=lambda m: got.append(m.payload))
    try:
        listener.connect()
        assert listener.subscribed, "no subscription to wait for"
        # A subscription made while connected clears readiness until its SUBACK.
        listener.subscribe("ready/one", qos=1)
        listener.subscribe("ready/two", qos=1)
        assert listener.wait_subscribed(30)
        sender = MqttConnection(mqtt_settings, f"send-{uuid.uuid4().hex[:8]}")
        sender.connect()
        for topic in ("ready/one", "ready/two"):
            sender.publish(topic, topic.encode(), qos=1).wait_for_publish(10)
        sender.close()
        assert wait_until(lambda: len(got) == 2, 30)
        assert sorted(got) == [b"ready/one", b"ready/two"]
    finally:
        listener.close()
