"""Commands from the control room: send, track, time out, and audit every step.

``CommandSender`` publishes a ``CommandRequest`` on the device's ``cmd/req`` topic (QoS 1,
MQTT 5 Response Topic = the device's own ``cmd/res``, Correlation Data = the command id),
listens to ``estate/v1/{estate}/+/+/cmd/res`` for the answers, and keeps each command's
state in the registry (table ``commands``)::

    pending -> sent -> accepted -> done | rejected | failed
          \\________\\__________\\-> timed_out (no final answer by deadline + grace)
          \\-> refused (the broker would not take it: docs/commands.md, section 10)

The registry's ``CommandStore`` makes each move a compare-and-set on the row plus one
``audit_log`` row in the same transaction, so several dispatch processes can share the
registry without moving a command twice. docs/commands.md is the contract.

The ``commands`` table is also the outbox: a decision (an approval, a plan's automatic
setpoints) writes its commands ``pending`` in its own transaction, claimed by a sender
(``claim()``); ``deliver()`` publishes the pending commands this sender has claimed, and
those whose claim expired (their sender died before delivering them), in the order they
were decided. The sweeper calls it every round, so a command written before a crash is
delivered after it; the device answers a command id it knows from its log, so a command
published twice (its sender died between the publication and recording ``sent``) is
carried out once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from dispatch.registry.command_store import CommandStore, device_path
from dispatch.registry.records import CommandRecord, DeliveryClaim
from estate.commands import (
    FINAL_STATES,
    CommandRequest,
    CommandState,
    MalformedCommand,
    ParamValue,
    Reason,
    decode_request,
    decode_response,
    state_for,
)
from estate.errors import BrokerError, ContractError
from estate.ports import Delivery, InboundMessage, Messaging
from estate.topics import Channel, DeviceId, parse_topic, subscription

log = logging.getLogger(__name__)



def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class BrokerRefusals:
    """The commands the broker refused: how many, the last one, and whether the newest
    publication it answered was refused (then commands cannot go out: health says so)."""

    count: int = 0
    refusing: bool = False
    last_command: str | None = None
    last_reason: str | None = None
    last_ms: int | None = None

    def report(self) -> dict[str, object]:
        return {"ok": not self.refusing, "refused": self.count,
                "last_refused": None if self.last_command is None else {
                    "command_id": self.last_command, "reason": self.last_reason,
                    "at_ms": self.last_ms}}


class CommandSender:
    """Sends commands to devices and follows them to a final state.

    ``start()`` subscribes to the answers of ``estates`` on ``messaging`` and starts the
    sweeper thread; ``send()`` records and publishes a command; the scheduler may also call
    ``sweep()``. A command without a final answer at its deadline plus ``answer_grace_s``
    becomes ``timed_out``: the deadline bounds when a device may *start* a command, the
    grace covers carrying it out and the answer's way back. The connection belongs to the
    caller, who connects and closes it.

    Answers are recorded on the connection's worker thread, never its network thread: a
    registry that waits for a lock (SQLite, up to its busy timeout) delays the answers
    behind it, not the connection's acknowledgements and keep-alives.
    """

    def __init__(self, messaging: Messaging, store: CommandStore, *,
                 estates: Sequence[str], actor: str = "dispatch",
                 answer_grace_s: float = 10.0, sweep_interval_s: float = 1.0,
                 publish_timeout_s: float = 5.0, claim_s: float = 10.0,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        # Unique per sender: a restarted process does not inherit its predecessor's claims,
        # it takes them over when they expire.
        self.identity = f"{actor}:{uuid.uuid4().hex[:12]}"
        # Another sender delivers a pending command this long after its claimer last
        # claimed it: longer than a publication takes with the broker there, short beside
        # a command's deadline (two minutes for a plan's setpoints).
        self._claim_ms = round(claim_s * 1000)
        # Held by ``deliver`` and by a decision between its commit and its delivery
        # (``delivering``), so the sweeper never publishes a decision's commands beside it.
        self._delivery_lock = threading.RLock()
        self._estates = list(estates)
        self._actor = actor
        self._grace_ms = round(answer_grace_s * 1000)
        self._sweep_interval_s = sweep_interval_s
        self._publish_timeout_s = publish_timeout_s
        self._clock = clock
        self._changed = threading.Condition()
        self._inflight: dict[str, Delivery] = {}
        self._inflight_lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._messaging = messaging
        self.refusals = BrokerRefusals()

    def start(self) -> None:
        """Subscribe to the answers and start the sweeper. While the connection is down a
        command sent stays pending until it is delivered, or times out."""
        for estate in self._estates:
            self._messaging.subscribe(subscription(Channel.COMMAND_RESPONSE, estate),
                                      self._on_message, qos=1)
        self._sweeper = threading.Thread(target=self._sweep_loop, name="command-sweeper",
                                         daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop the sweeper (the connection stays the caller's)."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(10)

    def send(self, device: DeviceId, action: str, params: Mapping[str, ParamValue] | None = None,
             *, requested_by: str, deadline_ms: int | None = None, timeout_s: float = 60.0,
             asset_id: str | None = None, plan_id: int | None = None,
             command_id: str | None = None, wait: bool = True) -> str:
        """Record and publish a command; return its id.

        With ``wait`` it waits (up to ``publish_timeout_s``) for the broker's acknowledgement
        and records ``sent``; without, the sweeper records it when the acknowledgement has
        come, so a caller sending several commands (a plan's approval) is not held up by
        each in turn while the broker is away.

        ``deadline_ms`` defaults to now + ``timeout_s``. A caller that passes its own
        ``command_id`` (a plan step's) may call again safely: a command already final is
        left alone, one still open is published again and the device answers it once.
        Raises ``MalformedCommand`` for a command the contract cannot carry.
        """
        now = self._clock()
        request = CommandRequest(command_id or str(uuid.uuid4()), action, dict(params or {}),
                                 deadline_ms if deadline_ms is not None
                                 else now + round(timeout_s * 1000), requested_by)
        payload = request.encode()
        decode_request(payload)  # refuse here what every device would refuse as malformed
        # With the delivery lock: the sweeper's ``deliver`` must not publish it meanwhile.
        with self._delivery_lock:
            if not self.store.create(request, device, at_ms=now, asset_id=asset_id,
                                     plan_id=plan_id, claimed_by=self.identity,
                                     claim_ms=self._claim_ms):
                existing = self.store.get(request.id)
                if existing is None or existing.final:
                    return request.id
                log.info("command %s is still %s: publishing it again", request.id,
                         existing.status)
                # With the deadline on record: the control room times the command out by
                # it, so a device must not be given longer.
                request = CommandRequest(request.id, existing.action, dict(existing.params),
                                         round(existing.deadline_at.timestamp() * 1000),
                                         request.issued_by)
                payload = request.encode()
            delivery = self._messaging.request(
                device.topic(Channel.COMMAND_REQUEST), payload,
                response_topic=device.topic(Channel.COMMAND_RESPONSE),
                correlation_data=request.id.encode("ascii"))
            with self._inflight_lock:
                self._inflight[request.id] = delivery
        if wait and not delivery.wait(self._publish_timeout_s) and delivery.refused is None:
            log.warning("command %s: the broker has not acknowledged it within %s s; it is "
                        "sent again on reconnection", request.id, self._publish_timeout_s)
        self._settle(request.id, delivery)
        return request.id

    @contextmanager
    def delivering(self) -> Iterator[None]:
        """Hold deliveries while a decision commits its commands and delivers them: the
        sweeper's round waits, so each is published by the decision alone, once."""
        with self._delivery_lock:
            yield

    def claim(self) -> DeliveryClaim:
        """The claim a decision writes its commands with, for this sender to deliver."""
        return DeliveryClaim(self.identity, self._claim_ms)

    def deliver(self) -> list[str]:
        """Publish the pending commands claimed by this sender or by nobody (any more),
        in the order they were decided; return their ids. A command this sender published
        already and the broker has not acknowledged yet is not published again (paho holds
        it until the connection is back)."""
        with self._delivery_lock:
            claimed = self.store.claim_deliverable(self._estates, self.identity,
                                                   now_ms=self._clock(),
                                                   claim_ms=self._claim_ms)
            published = []
            for record in claimed:
                with self._inflight_lock:
                    if record.id in self._inflight:
                        continue
                try:
                    self._publish(record)
                except BrokerError as exc:
                    log.error("command %s not published: %s; trying again", record.id, exc)
                    break  # the rest after it, in order, on the next round
                published.append(record.id)
        return published

    def _publish(self, record: CommandRecord) -> None:
        request = CommandRequest(record.id, record.action, dict(record.params),
                                 round(record.deadline_at.timestamp() * 1000),
                                 record.requested_by)
        delivery = self._messaging.request(
            record.device.topic(Channel.COMMAND_REQUEST), request.encode(),
            response_topic=record.device.topic(Channel.COMMAND_RESPONSE),
            correlation_data=record.id.encode("ascii"))
        with self._inflight_lock:
            self._inflight[record.id] = delivery
        self._settle(record.id, delivery)

    def get(self, command_id: str) -> CommandRecord | None:
        return self.store.get(command_id)

    def wait(self, command_id: str, timeout_s: float) -> CommandRecord | None:
        """The command once it is final, or as it stands after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.store.get(command_id)
            remaining = deadline - time.monotonic()
            if record is None or record.final or remaining <= 0:
                return record
            with self._changed:
                # Another process may move it without notifying us: look again soon anyway.
                self._changed.wait(min(remaining, 0.5))

    def sweep(self, now: int | None = None) -> list[str]:
        """Time out every open command whose deadline plus grace has passed; return them."""
        now = self._clock() if now is None else now
        timed_out = []
        for command_id in self.store.overdue(now - self._grace_ms):
            record = self.store.get(command_id)
            last = record.status.value if record else "unknown"
            if self.store.move(command_id, CommandState.TIMED_OUT, actor=self._actor,
                               at_ms=now, reason=Reason.TIMED_OUT.value,
                               detail=f"no final answer by the deadline (+{self._grace_ms} ms);"
                                      f" last state {last}"):
                timed_out.append(command_id)
                self._forget(command_id)
        if timed_out:
            log.warning("%d commands timed out: %s", len(timed_out), ", ".join(timed_out))
            self._notify()
        return timed_out

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self._sweep_interval_s):
            try:
                self.deliver()
                self._record_acknowledged()
                self.sweep()
            except Exception:
                log.exception("command sweep failed; trying again in %s s",
                              self._sweep_interval_s)

    def _record_acknowledged(self) -> None:
        """Record ``sent`` for commands the broker acknowledged since they were published
        (``send`` without waiting), ``refused`` for those it refused; a command already
        further along is left as it is."""
        with self._inflight_lock:
            answered = [(c, delivery) for c, delivery in self._inflight.items()
                        if delivery.delivered or delivery.refused is not None]
        for command_id, delivery in answered:
            record = self.store.get(command_id)
            if record is not None and record.status is CommandState.PENDING:
                self._settle(command_id, delivery)

    def _settle(self, command_id: str, delivery: Delivery) -> None:
        """What the broker said of a command's publication, recorded: ``refused`` at once
        if it refused it, ``sent`` if it took it, nothing yet if it has not answered."""
        refused = delivery.refused
        if refused is not None:
            self._mark_refused(command_id, refused)
        elif delivery.delivered:
            self.refusals.refusing = False
            self._mark_sent(command_id)

    def _mark_refused(self, command_id: str, reason: str) -> None:
        at = self._clock()
        self._forget(command_id)
        if self.store.move(command_id, CommandState.REFUSED, actor=self._actor, at_ms=at,
                           reason=Reason.BROKER_REFUSED.value, detail=reason):
            r = self.refusals
            r.count, r.refusing = r.count + 1, True
            r.last_command, r.last_reason, r.last_ms = command_id, reason, at
            log.error("command %s refused by the broker: %s", command_id, reason)
            self._notify()

    def _mark_sent(self, command_id: str) -> None:
        if self.store.move(command_id, CommandState.SENT, actor=self._actor,
                           at_ms=self._clock()):
            self._notify()

    def _forget(self, command_id: str) -> Delivery | None:
        with self._inflight_lock:
            return self._inflight.pop(command_id, None)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # The connection's worker thread calls this.
    def _on_message(self, message: InboundMessage) -> None:
        try:
            self._answer(message)
        except Exception:
            log.exception("answer on %s could not be recorded", message.topic)

    def _answer(self, message: InboundMessage) -> None:
        try:
            topic = parse_topic(message.topic)
            response = decode_response(message.payload)
        except (ContractError, MalformedCommand) as exc:
            log.warning("unreadable command answer on %s: %s", message.topic, exc)
            return
        correlated = (message.correlation_data or b"").decode("ascii", "replace")
        command_id = correlated or response.id
        if response.id and correlated and response.id != correlated:
            log.warning("answer on %s names %s but correlates to %s: ignored", message.topic,
                        response.id, correlated)
            return
        record = self.store.get(command_id) if command_id else None
        if record is None:
            log.debug("answer for a command not ours: %s", command_id)
            return
        if record.device != topic.device:
            log.warning("%s answered command %s of %s: ignored", topic.device, command_id,
                        record.device)
            return
        actor = f"device:{device_path(topic.device)}"
        now = self._clock()
        to = state_for(response.status)
        with self._inflight_lock:
            delivery = (self._inflight.pop(command_id, None) if to in FINAL_STATES
                        else self._inflight.get(command_id))
        # A connection handles the PUBACK before any answer that follows it, so the command
        # is recorded as sent before it is recorded as answered.
        if delivery is not None and delivery.delivered:
            self._mark_sent(command_id)
        if self.store.move(command_id, to, actor=actor, at_ms=now,
                           reason=response.reason or None, detail=response.detail or None):
            self._notify()
        elif record.status is CommandState.TIMED_OUT or (
                record.final and to in FINAL_STATES and record.status is not to):
            # The device acted after we gave up, or contradicts its own final answer: the
            # operator must be able to see it, though the state stays as it was.
            self.store.note(command_id, actor=actor, action="command.late_answer", at_ms=now,
                            detail={"state": record.status.value,
                                    "answer": response.status.value,
                                    "reason": response.reason or None,
                                    "detail": response.detail or None})
