"""The messaging port's MQTT adapter against the real Mosquitto: handlers off the network
thread, our own delivery handle and errors, readiness; reconnection jittered per
connection and back after a broker restart with its subscriptions.

The restart test runs a private Mosquitto so that it can stop and start it without
disturbing the session's broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.mqtt import InboundMessage, MqttConnection
from estate.errors import BrokerError
from estate.ports import Handling
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


@pytest.mark.servers
def test_a_connection_comes_back_after_a_broker_restart_with_its_subscription(
        tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    settings = MqttSettings(host="127.0.0.1", port=broker.port)
    got = threading.Event()

    def handle(message: InboundMessage) -> None:
        if message.payload == b"after":
            got.set()

    listener = MqttConnection(settings, f"listen-{uuid.uuid4().hex[:8]}")
    listener.subscribe("jitter/test", handle, qos=1)
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
        sender.publish("jitter/test", b"after", qos=1).wait(10)
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
            sender.publish(topic, str(k).encode(), qos=1).wait(5)
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


def test_a_slow_handler_stalls_neither_the_connection_nor_other_subscriptions(
        mqtt_settings: MqttSettings) -> None:
    """A handler that waits (a registry write held up by a lock, say) runs on the
    connection's worker: meanwhile the network thread still takes the broker's
    acknowledgements and hands an INLINE subscription its messages."""
    base = f"slow/{uuid.uuid4().hex[:8]}"
    entered, release, inline_got = threading.Event(), threading.Event(), threading.Event()
    threads: dict[str, str] = {}
    worker_got: list[bytes] = []

    def slow(message: InboundMessage) -> None:
        threads["worker"] = threading.current_thread().name
        worker_got.append(message.payload)
        entered.set()
        release.wait(30)

    def quick(message: InboundMessage) -> None:
        threads["inline"] = threading.current_thread().name
        inline_got.set()

    connection = MqttConnection(mqtt_settings, f"slow-{uuid.uuid4().hex[:8]}")
    connection.subscribe(f"{base}/worker", slow)
    connection.subscribe(f"{base}/inline", quick, handling=Handling.INLINE)
    other = MqttConnection(mqtt_settings, f"other-{uuid.uuid4().hex[:8]}")
    try:
        assert not connection.subscribed
        connection.connect()
        assert connection.wait_subscribed(10)
        assert connection.subscribed
        other.connect()
        assert other.publish(f"{base}/worker", b"first").wait(10)
        assert entered.wait(10), "the slow handler got its message"
        # The handler is stuck; the same connection's own publication is still acknowledged.
        assert connection.publish(f"{base}/elsewhere", b"x").wait(10), \
            "no PUBACK while a handler waits: the network thread is blocked"
        assert other.publish(f"{base}/inline", b"y").wait(10)
        assert inline_got.wait(10), "an INLINE subscription is served meanwhile"
        assert other.publish(f"{base}/worker", b"second").wait(10)
        release.set()
        assert wait_until(lambda: worker_got == [b"first", b"second"], 10), worker_got
    finally:
        release.set()
        other.close()
        connection.close()
    network = "paho-mqtt-client-"
    assert not threads["worker"].startswith(network), threads
    assert threads["inline"].startswith(network), threads


def test_our_errors_and_delivery_handle_not_pahos(mqtt_settings: MqttSettings) -> None:
    connection = MqttConnection(mqtt_settings, f"errors-{uuid.uuid4().hex[:8]}")
    with pytest.raises(BrokerError, match="not a topic filter"):
        connection.subscribe("bad/#/filter", lambda m: None)
    connection.connect()
    try:
        with pytest.raises(BrokerError, match="cannot publish"):
            connection.publish("no/+/wildcards", b"")
        delivery = connection.publish(f"errors/{uuid.uuid4().hex}", b"", qos=1)
        assert delivery.wait(10)
        assert delivery.delivered
    finally:
        connection.close()
    # Published while disconnected: kept for the next connection, never an exception.
    waiting = connection.publish(f"errors/{uuid.uuid4().hex}", b"", qos=1)
    assert not waiting.delivered
    assert waiting.wait(0.05) is False


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
    listener = MqttConnection(mqtt_settings, f"sub-{uuid.uuid4().hex[:8]}")
    try:
        listener.connect()
        assert listener.subscribed, "no subscription to wait for"
        # A subscription made while connected clears readiness until its SUBACK.
        listener.subscribe("ready/one", lambda m: got.append(m.payload), qos=1)
        listener.subscribe("ready/two", lambda m: got.append(m.payload), qos=1)
        assert listener.wait_subscribed(30)
        sender = MqttConnection(mqtt_settings, f"send-{uuid.uuid4().hex[:8]}")
        sender.connect()
        for topic in ("ready/one", "ready/two"):
            sender.publish(topic, topic.encode(), qos=1).wait(10)
        sender.close()
        assert wait_until(lambda: len(got) == 2, 30)
        assert sorted(got) == [b"ready/one", b"ready/two"]
    finally:
        listener.close()
