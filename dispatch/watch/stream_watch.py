"""The streaming rules on the telemetry, as it arrives: a subscriber of the control
room's own (not a poll of the store), whose transitions a scheduler job writes.

- The control room has one MQTT session per estate (``estate-dispatch-alarms-<estate>``),
  persistent and manually acknowledged, held by the worker holding the scheduler lease:
  ``activate`` at each gain connects it (with an evaluator restored from the registry's
  active alarms), ``deactivate`` at a loss closes it. Readings published while no worker
  held it wait at the broker.
- Each message is decoded and fed to the ``StreamEvaluator`` on the connection's handler
  thread (never paho's network thread); its transitions and its acknowledgement wait in
  ``pending``.
- ``flush`` is the scheduler job (every ``stream_flush_s``, and at once when a message
  caused a transition): the deadman's tick, then the transitions and the control-room step
  in one transaction, and only after the commit the messages' acknowledgements. A worker
  killed before the commit leaves its messages unacknowledged: the broker delivers them
  again to the next holder, whose evaluator (restored from the registry) raises nothing
  the registry holds already active.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dispatch.alarms.model import AlarmTransition
from dispatch.alarms.stream import StreamEvaluator
from dispatch.registry import alarm_board
from dispatch.registry.db import Registry
from dispatch.registry.room_step import CycleOutcome, RoomContext, control_room_step
from dispatch.watch.metrics import (
    RULE_EVALUATION,
    STEP_LATENCY,
    STREAM_READINGS,
    STREAM_REFUSED,
    TRANSITIONS,
)
from estate.errors import TopicError
from estate.model import EstateSpec
from estate.ports import InboundMessage, Messaging
from estate.senml import decode_pack
from estate.topics import Channel, parse_topic, subscription

log = logging.getLogger(__name__)


def session_client_id(estate: str) -> str:
    """The control room's MQTT session: one per estate, whichever worker holds it."""
    return f"estate-dispatch-alarms-{estate}"[:64]


@dataclass
class _Pending:
    """What waits for the next flush, of one connection."""

    connection: Messaging
    transitions: list[AlarmTransition] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (mid, qos)
    first_arrival: float | None = None  # monotonic time of the oldest waiting transition


class StreamWatch:
    """See the module's docstring. ``connect`` makes the control room's connection (not
    connected yet); ``wake`` asks the scheduler to flush soon."""

    def __init__(self, spec: EstateSpec, registry: Registry, room: RoomContext,
                 connect: Callable[[], Messaging]) -> None:
        self._spec = spec
        self._registry = registry
        self._room = room
        self._connect = connect
        self.wake: Callable[[], None] = lambda: None
        self._lock = threading.Lock()  # the evaluator and pending
        self._flushing = threading.Lock()  # one flush at a time, in order
        self._evaluator: StreamEvaluator | None = None
        self._pending: _Pending | None = None
        self._connection: Messaging | None = None
        self._wanted = False  # the lease is held: the session should be ours

    @property
    def subscribed(self) -> bool:
        connection = self._connection
        return connection is not None and connection.subscribed

    @property
    def active(self) -> bool:
        return self._evaluator is not None

    def activate(self) -> None:
        """The lease is ours: take the session (again at the next flush if the registry
        does not answer now)."""
        self._wanted = True
        try:
            self._take()
        except Exception:
            log.exception("streaming rules: could not take the session; trying again")

    def deactivate(self) -> None:
        """Give the session up (the lease went elsewhere, or the worker stops): what was
        not flushed stays unacknowledged, for the next holder."""
        self._wanted = False
        self._give()

    def _take(self) -> None:
        """An evaluator restored from the registry, then the subscription (so no message
        is judged by an evaluator that is not ready)."""
        now_ms = time.time_ns() // 1_000_000
        evaluator = StreamEvaluator(self._room.estate, self._spec.rule_book(), now_ms)
        with self._registry.reading() as session:
            active = alarm_board.active_alarms(session, self._room.estate)
        restored = evaluator.restore((a.alarm.source, a.alarm.rule_id, a.alarm.value)
                                     for a in active)
        connection = self._connect()
        with self._lock:
            self._evaluator = evaluator
            self._pending = _Pending(connection)
            self._connection = connection
        connection.subscribe(subscription(Channel.TELEMETRY, estate=self._room.estate),
                             self.handle, qos=1)
        connection.connect_async()
        log.info("streaming rules: %d sources, %d active alarms restored; subscribing",
                 evaluator.sources, restored)

    def _give(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            self._evaluator = None
            self._pending = None
        if connection is not None:
            connection.close()

    def handle(self, message: InboundMessage) -> None:
        """A telemetry message (on the connection's handler thread)."""
        received_ms = time.time_ns() // 1_000_000
        try:
            topic = parse_topic(message.topic)
        except TopicError:
            topic = None
        readings = [] if topic is None else decode_pack(message.payload, topic.device,
                                                        received_ms).readings
        if topic is None:
            STREAM_REFUSED.labels("topic").inc()
        began = time.perf_counter()
        with self._lock:
            evaluator, pending = self._evaluator, self._pending
            if evaluator is None or pending is None or pending.connection is not \
                    self._connection:
                return  # not ours any more: unacknowledged, for the next holder
            transitions = evaluator.feed_pack(readings, received_ms) if readings else []
            pending.acks.append((message.mid, message.qos))
            if transitions:
                pending.transitions.extend(transitions)
                if pending.first_arrival is None:
                    pending.first_arrival = time.monotonic()
        RULE_EVALUATION.labels("stream").observe(time.perf_counter() - began)
        STREAM_READINGS.inc(len(readings))
        if transitions:
            self.wake()

    def flush(self, now_ms: int | None = None) -> CycleOutcome | None:
        """The scheduler job: tick, record, step, then acknowledge (module docstring)."""
        with self._flushing:
            now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
            if self._wanted and self._evaluator is None:
                self._take()
            with self._lock:
                evaluator, pending = self._evaluator, self._pending
                if evaluator is None or pending is None:
                    return None
                self._pending = _Pending(pending.connection)
                transitions = pending.transitions + evaluator.tick(now_ms)
            outcome = None
            if transitions:
                try:
                    with self._registry.writing() as session:
                        outcome = control_room_step(
                            session, self._room, transitions,
                            datetime.fromtimestamp(now_ms / 1000, UTC))
                except Exception:
                    self._restart(pending.connection)
                    raise
                TRANSITIONS.labels("raise").inc(outcome.raised)
                TRANSITIONS.labels("clear").inc(outcome.cleared)
                if pending.first_arrival is not None:
                    STEP_LATENCY.observe(time.monotonic() - pending.first_arrival)
            for mid, qos in pending.acks:
                pending.connection.ack(mid, qos)
            return outcome

    def _restart(self, connection: Messaging) -> None:
        """The registry refused a flush: the evaluator moved on and the registry did not,
        and the messages are not acknowledged. Give the session up and take it again, so
        the broker delivers them again to an evaluator restored from the registry (the
        next flush takes the session again)."""
        if connection is self._connection:
            log.warning("streaming rules: the registry refused their transitions; "
                        "taking the session again to be given the messages again")
            self._give()
