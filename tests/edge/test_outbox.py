"""The gateway's outbox: a durable FIFO, acknowledged by id, bounded by rows, bytes and age."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edge.outbox import Bounds, Outbox, OutboxMetrics

T0 = 1_800_000_000.0  # a fixed "now" for the outbox's clock, seconds


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make(path: Path, bounds: Bounds | None = None,
         clock: Clock | None = None) -> tuple[Outbox, CollectorRegistry]:
    registry = CollectorRegistry()
    outbox = Outbox(path, bounds, OutboxMetrics(registry), clock or Clock())
    return outbox, registry


def dropped(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("gateway_outbox_dropped_total", {"reason": reason})


def test_messages_come_back_oldest_first_and_leave_only_when_acked(tmp_path: Path) -> None:
    outbox, registry = make(tmp_path / "o.sqlite3")
    for i in range(10):
        outbox.append(f"t/{i % 3}", f"p{i}".encode(), int(T0 * 1000) + i)
    first = outbox.peek(4)
    assert [m.payload for m in first] == [b"p0", b"p1", b"p2", b"p3"]
    assert [m.topic for m in first] == ["t/0", "t/1", "t/2", "t/0"]
    # The sender asks for what follows the last message it sent.
    after = outbox.peek(100, after_id=first[-1].id)
    assert [m.payload for m in after] == [f"p{i}".encode() for i in range(4, 10)]
    assert outbox.ack([m.id for m in first[:2]]) == 2
    assert [m.payload for m in outbox.peek(3)] == [b"p2", b"p3", b"p4"]
    assert len(outbox) == 8
    assert outbox.size_bytes == 8 * 2
    assert outbox.ack([first[0].id]) == 0, "acking twice deletes nothing more"
    assert registry.get_sample_value("gateway_outbox_rows") == 8
    assert registry.get_sample_value("gateway_outbox_acked_total") == 2
    assert registry.get_sample_value("gateway_outbox_appended_total") == 10
    outbox.close()


def test_what_was_not_acked_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox, _ = make(path)
    outbox.append_many([("t", f"p{i}".encode(), int(T0 * 1000) + i) for i in range(5)])
    outbox.ack([outbox.peek(1)[0].id])
    outbox.close()
    reopened, registry = make(path)
    assert len(reopened) == 4
    assert [m.payload for m in reopened.peek(10)] == [b"p1", b"p2", b"p3", b"p4"]
    assert registry.get_sample_value("gateway_outbox_bytes") == 8
    # New messages queue behind the old ones, and ids never go back.
    reopened.append("t", b"new", int(T0 * 1000) + 9)
    messages = reopened.peek(10)
    assert messages[-1].payload == b"new"
    assert [m.id for m in messages] == sorted(m.id for m in messages)
    reopened.close()


def test_a_killed_writer_loses_nothing_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from edge.outbox import Outbox\n"
        "o = Outbox(Path(sys.argv[1]))\n"
        "for i in range(50):\n"
        "    o.append('t', b'p%d' % i, 1_800_000_000_000 + i)\n"
        "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=Path.cwd(),
                          capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    outbox, _ = make(path)
    assert [m.payload for m in outbox.peek(100)] == [b"p%d" % i for i in range(50)]
    outbox.close()


def test_full_outbox_drops_the_oldest_with_a_warning_and_a_count(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox, registry = make(tmp_path / "o.sqlite3", Bounds(max_rows=5, max_bytes=10_000))
    base = int(T0 * 1000)
    outbox.append_many([("t", b"%d" % i, base + i) for i in range(5)])
    assert dropped(registry, "full") == 0
    with caplog.at_level(logging.WARNING, logger="edge.outbox"):
        outbox.append_many([("t", b"5", base + 5), ("t", b"6", base + 6)])
    assert [m.payload for m in outbox.peek(10)] == [b"2", b"3", b"4", b"5", b"6"]
    assert dropped(registry, "full") == 2
    assert any("outbox full" in r.getMessage() and "oldest 2" in r.getMessage()
               for r in caplog.records)


def test_byte_bound_drops_enough_oldest_messages_and_refuses_a_message_too_big(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox, registry = make(tmp_path / "o.sqlite3", Bounds(max_rows=1000, max_bytes=1024))
    base = int(T0 * 1000)
    outbox.append_many([("t", bytes([i]) * 300, base + i) for i in range(3)])  # 900 bytes
    with caplog.at_level(logging.WARNING, logger="edge.outbox"):
        outbox.append("t", b"x" * 400, base + 3)
        outbox.append("t", b"y" * 2000, base + 4)
    assert [len(m.payload) for m in outbox.peek(10)] == [300, 300, 400]
    assert outbox.size_bytes == 1000
    assert dropped(registry, "full") == 1
    assert dropped(registry, "oversize") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("larger than its whole byte limit" in m for m in messages)
    assert any("outbox full" in m for m in messages)


def test_messages_older_than_the_age_limit_are_dropped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outbox, registry = make(tmp_path / "o.sqlite3", Bounds(max_age_s=3600), clock)
    now_ms = int(T0 * 1000)
    outbox.append("t", b"old", now_ms - 3_000_000)  # 50 min old
    outbox.append("t", b"new", now_ms)
    assert registry.get_sample_value("gateway_outbox_oldest_age_seconds") == 3000
    clock.now += 900  # the old one is now 65 minutes old
    with caplog.at_level(logging.WARNING, logger="edge.outbox"):
        remaining = outbox.peek(10)
    assert [m.payload for m in remaining] == [b"new"]
    assert dropped(registry, "expired") == 1
    assert any("older than 3600 s" in r.getMessage() for r in caplog.records)
    assert registry.get_sample_value("gateway_outbox_oldest_age_seconds") == 900
    outbox.ack([remaining[0].id])
    assert registry.get_sample_value("gateway_outbox_oldest_age_seconds") == 0
