"""The streaming rules in the worker, through in-memory messaging and a real SQLite
registry: a message's transitions are written by the flush, with the control-room step,
and the messages are acknowledged only after the commit; messages delivered again after a
crash (a fresh watch, restored from the registry) raise nothing twice."""

from __future__ import annotations

from pathlib import Path

from dispatch.registry import alarm_board, outbox
from dispatch.registry.db import Registry
from dispatch.registry.room_step import RoomContext
from dispatch.watch.stream_watch import StreamWatch
from estate.readings import Reading
from estate.senml import encode_readings
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryMessaging

DEVICE = DeviceId(SPEC.id, "textile", "main")
T0 = 1_796_000_000_000  # 2026-11-29


def _pack(at_ms: int, kw: float) -> bytes:
    return encode_readings(DEVICE, [Reading(SPEC.id, "textile", "main", "power", "", kw,
                                            at_ms)])


def _watch(registry: Registry, messaging: InMemoryMessaging) -> StreamWatch:
    watch = StreamWatch(SPEC, registry, RoomContext.of(SPEC), lambda: messaging)
    watch.activate()
    return watch


def _feed(messaging: InMemoryMessaging) -> list[int]:
    """Ten ordinary readings, a spike, then normal again; the mids injected."""
    topic = DEVICE.topic(Channel.TELEMETRY)
    mids = []
    for k, kw in enumerate([100.0, 101.0, 99.5, 100.5, 100.0, 99.0, 101.0, 100.2, 99.8,
                            100.1, 1500.0]):
        messaging.inject(topic, _pack(T0 + k * 5000, kw))
        mids.append(len(mids) + 1)
    return mids


def _raised(registry: Registry) -> list[outbox.OutboxEvent]:
    with registry.reading() as session:
        return [e for e in outbox.events(session, SPEC.id) if e.type == "alarm.raised"]


def test_a_spike_is_recorded_by_the_flush_and_acknowledged_after_it(tmp_path: Path) -> None:
    registry = sample_registry(tmp_path)
    messaging = InMemoryMessaging()
    woken: list[bool] = []
    watch = _watch(registry, messaging)
    watch.wake = lambda: woken.append(True)
    assert messaging.subscriptions() == [f"estate/v1/{SPEC.id}/+/+/telemetry"]
    _feed(messaging)
    assert woken == [True]  # the spike asked for a flush at once
    assert messaging.acked == []  # nothing acknowledged before the commit
    assert _raised(registry) == []
    outcome = watch.flush(now_ms=T0 + 60_000)
    assert outcome is not None
    assert outcome.raised == 1
    assert messaging.acked == list(range(1, 12))
    raised = _raised(registry)
    assert [(e.payload["source"], e.payload["rule_id"]) for e in raised] == [
        ("textile/main", "spike")]
    with registry.reading() as session:
        assert [(a.alarm.source, a.alarm.rule_id) for a in
                alarm_board.active_alarms(session, SPEC.id)] == [("textile/main", "spike")]
    # Nothing new: the flush writes nothing and acknowledges nothing more.
    assert watch.flush(now_ms=T0 + 61_000) is None
    assert messaging.acked == list(range(1, 12))
    registry.close()


def test_messages_delivered_again_after_a_crash_raise_nothing_twice(tmp_path: Path) -> None:
    registry = sample_registry(tmp_path)
    first = InMemoryMessaging()
    watch = _watch(registry, first)
    _feed(first)
    watch.flush(now_ms=T0 + 60_000)
    # The worker dies after the commit, before its acknowledgements reached the broker:
    # the next one is given the same messages again.
    again = InMemoryMessaging()
    restarted = _watch(registry, again)
    _feed(again)
    restarted.flush(now_ms=T0 + 60_000)
    assert len(_raised(registry)) == 1
    assert again.acked == list(range(1, 12))
    registry.close()


def test_a_watch_that_gave_the_session_up_judges_and_acknowledges_nothing(
        tmp_path: Path) -> None:
    registry = sample_registry(tmp_path)
    messaging = InMemoryMessaging()
    watch = _watch(registry, messaging)
    watch.deactivate()
    assert not messaging.connected
    _feed(messaging)
    assert watch.flush(now_ms=T0 + 60_000) is None
    assert messaging.acked == []
    assert _raised(registry) == []
    registry.close()
