"""Reconnection backoff of the paho wrapper: jittered per connection, and used by paho.

The broker test runs a private Mosquitto so that it can stop and start it without
disturbing the session's broker.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.mqtt import MqttConnection, ReconnectBackoff
from estate.settings import MqttSettings
from launcher.servers import Mosquitto

CEILINGS = [1, 2, 4, 8, 16, 30, 30, 30]


def test_delays_double_up_to_the_maximum_each_between_half_and_all_of_it() -> None:
    backoff = ReconnectBackoff(rng=random.Random(7))
    delays = [backoff.next_delay() for _ in CEILINGS]
    for delay, ceiling in zip(delays, CEILINGS, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0
    with pytest.raises(ValueError, match="first_s"):
        ReconnectBackoff(first_s=0)


def test_two_connections_get_different_delay_sequences() -> None:
    settings = MqttSettings(host="127.0.0.1", port=1)
    first = MqttConnection(settings, "jitter-a")
    second = MqttConnection(settings, "jitter-b")
    a = [first.backoff.next_delay() for _ in CEILINGS]
    b = [second.backoff.next_delay() for _ in CEILINGS]
    assert a != b
    # Not merely shifted: every single attempt differs, so no two retry in lockstep.
    assert all(x != y for x, y in zip(a, b, strict=True))
    for delays in (a, b):
        assert all(c / 2 <= d <= c for d, c in zip(delays, CEILINGS, strict=True))


class RecordingBackoff(ReconnectBackoff):
    """The real backoff, remembering every delay it handed out and every reset."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.resets = 0
        self._seen = threading.Lock()

    def next_delay(self) -> float:
        delay = super().next_delay()
        with self._seen:
            self.delays.append(delay)
        return delay

    def reset(self) -> None:
        super().reset()
        with self._seen:
            self.resets += 1


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_paho_reconnects_through_the_jittered_backoff(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    backoff = RecordingBackoff()
    connection = MqttConnection(MqttSettings(host="127.0.0.1", port=broker.port),
                                "jitter-live", backoff=backoff)
    try:
        connection.connect()
        assert backoff.resets == 1
        assert backoff.delays == []
        broker.stop()
        assert wait_until(lambda: not connection.connected), "the loss was noticed"
        # The broker stays away until paho failed at least once more, so that a second,
        # larger delay was drawn.
        assert wait_until(lambda: len(backoff.delays) >= 2), "paho asked for a second delay"
        broker.start()
        assert connection.wait_connected(60), "reconnected after the broker came back"
    finally:
        connection.close()
        broker.stop()
    assert backoff.resets == 2
    first, second = backoff.delays[:2]
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0
    assert connection.last_reconnect_delay_s in backoff.delays
