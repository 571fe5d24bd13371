"""The gateway's forwarding logic, fast: the outbox (a real SQLite file) forwarded through
the in-memory messaging double of our own port (tests/doubles.py). The real broker path,
outages and restarts included, is tests/edge/test_gateway.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.gateway import SEND_WINDOW, Sender
from edge.outbox import Outbox
from tests.doubles import InMemoryMessaging

T0 = int(time.time() * 1000)  # the outbox expires what is older than its bound


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class _Watched(InMemoryMessaging):
    """Counts how often the sender looked at the connection: its rounds."""

    looked = 0

    @property
    def connected(self) -> bool:
        self.looked += 1
        return super().connected


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def _sender(outbox: Outbox, messaging: InMemoryMessaging, births: list[int],
            ) -> tuple[Sender, threading.Event]:
    wakeup = threading.Event()
    sender = Sender(outbox, messaging, lambda: births.append(len(messaging.published)), wakeup)
    sender.start()
    return sender, wakeup


def test_the_outbox_is_forwarded_oldest_first_and_emptied_once_acknowledged(
        outbox: Outbox) -> None:
    outbox.append_many([(f"t/{k}", str(k).encode(), T0 + k) for k in range(250)])
    messaging, births = InMemoryMessaging(), []
    messaging.connect()
    sender, _ = _sender(outbox, messaging, births)
    try:
        assert wait_until(lambda: len(outbox) == 0), len(outbox)
    finally:
        sender.stop()
    assert [m.topic for m in messaging.published] == [f"t/{k}" for k in range(250)]
    assert all(m.qos == 1 for m in messaging.published)
    assert births == [0], "births once, before the first message of the connection"


def test_nothing_leaves_the_outbox_before_the_broker_acknowledged_it(outbox: Outbox) -> None:
    outbox.append_many([(f"t/{k}", b"x", T0 + k) for k in range(SEND_WINDOW + 50)])
    messaging, births = _Watched(acknowledge=False), []
    messaging.connect()
    sender, _ = _sender(outbox, messaging, births)
    try:
        # A window's worth goes out, and no more until acknowledgements come back.
        assert wait_until(lambda: len(messaging.published) == SEND_WINDOW)
        rounds = messaging.looked
        assert wait_until(lambda: messaging.looked >= rounds + 3)
        assert len(messaging.published) == SEND_WINDOW
        assert len(outbox) == SEND_WINDOW + 50
        for delivery in messaging.deliveries[:10]:
            delivery.acknowledge()
        assert wait_until(lambda: len(outbox) == SEND_WINDOW + 40)
        assert wait_until(lambda: len(messaging.published) == SEND_WINDOW + 10)
    finally:
        sender.stop()


def test_while_disconnected_nothing_is_sent_and_the_outbox_keeps_it(outbox: Outbox) -> None:
    outbox.append("t/0", b"x", T0)
    messaging, births = _Watched(), []
    sender, wakeup = _sender(outbox, messaging, births)
    try:
        wakeup.set()
        # Rounds of the sender went by while disconnected, and sent nothing.
        assert wait_until(lambda: messaging.looked >= 3)
        assert messaging.published == []
        assert births == []
        messaging.connect()
        assert wait_until(lambda: len(outbox) == 0)
        assert births == [0]
    finally:
        sender.stop()
