"""Commands at the edge: receive on ``cmd/req``, validate, execute, answer (docs/commands.md).

``CommandHandler`` answers for a set of devices, each with its ``CommandPolicy`` and an
``Executor`` that carries commands out: ``ModbusExecutor`` writes holding registers of a
real device, ``SimulatedAssetExecutor`` drives in-memory assets for the simulator. Every
command id and every answer given is kept in a small SQLite file (``CommandLog``), the
edge's own audit trail, which also makes the handler idempotent: a command id seen before
is answered again from the log and never executed twice, across restarts too.

Messages are queued as they arrive (``Handling.INLINE``: the queue is the handler's own) and
carried out one at a time on the handler's own worker thread, so a slow Modbus write never
stalls the MQTT connection, and ``stop`` can finish the command in hand.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.command_executors import ExecutionError, Executor
from edge.command_log import CommandLog, device_path
from estate.commands import (
    CommandPolicy,
    CommandResponse,
    MalformedCommand,
    Reason,
    ResponseStatus,
    check,
    decode_request,
)
from estate.errors import ConfigError, ContractError
from estate.ports import Handling, InboundMessage, Messaging
from estate.topics import Channel, DeviceId, parse_topic

log = logging.getLogger(__name__)

DEFAULT_LOG_FILE: Final = "edge_commands.sqlite"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class CommandTarget:
    """A device the handler answers for: what it may be told and who carries it out."""

    device: DeviceId
    policy: CommandPolicy
    executor: Executor


Reply = Callable[[str, bytes, bytes | None], None]
"""Publishes an answer: (topic, payload, correlation data)."""

_STOP: Final = object()


class CommandHandler:
    """Answers commands for ``targets``; the edge's side of docs/commands.md.

    Wiring: create the handler, then ``handler.start(messaging)``, which subscribes to each
    device's ``cmd/req`` and starts the worker, before or after the connection is made.
    """

    def __init__(self, targets: Sequence[CommandTarget], log_path: Path, *,
                 clock: Callable[[], int] = now_ms) -> None:
        self._targets = {t.device: t for t in targets}
        if len(self._targets) != len(targets):
            raise ConfigError("a device appears twice among the command targets")
        self.log = CommandLog(log_path)
        self._clock = clock
        self._queue: queue.Queue[InboundMessage | object] = queue.Queue()
        self._connection: Messaging | None = None
        self._manual_ack = False
        self._worker: threading.Thread | None = None

    @property
    def devices(self) -> list[DeviceId]:
        return list(self._targets)

    def on_message(self, message: InboundMessage) -> None:
        """The subscription's handler, on the network thread: queue for the worker."""
        self._queue.put(message)

    def start(self, connection: Messaging, *, manual_ack: bool = False) -> None:
        """Subscribe to every device's ``cmd/req`` and start carrying commands out.

        ``manual_ack``: the connection's session acknowledges by hand; each request is then
        acknowledged only once its answer is in the log, so a crash before that redelivers it.
        """
        self._connection = connection
        self._manual_ack = manual_ack
        for logged in self.log.unfinished():
            answer = CommandResponse(logged.id, ResponseStatus.FAILED, Reason.INTERRUPTED,
                                     "the edge stopped while carrying the command out",
                                     self._clock())
            self.log.record(self._device(logged.device), b"", None, answer.at_ms,
                            logged.response_topic, logged.correlation_data, answer)
            self._reply(logged.response_topic, answer, logged.correlation_data)
        for device in self._targets:
            connection.subscribe(device.topic(Channel.COMMAND_REQUEST), self.on_message, qos=1,
                                 handling=Handling.INLINE)
        self._worker = threading.Thread(target=self._work, name="edge-commands", daemon=True)
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the command in hand, stop the worker and close the log."""
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout_s)
            self._worker = None
        self.log.close()

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, InboundMessage)
            try:
                self.process(item)
            except Exception:
                # The message stays un-acknowledged: the broker redelivers it to a restarted
                # edge, whose log then answers it or carries it out.
                log.exception("command on %s could not be handled", item.topic)
                continue
            if self._manual_ack and self._connection is not None:
                self._connection.ack(item.mid, item.qos)

    def process(self, message: InboundMessage) -> None:
        """Handle one ``cmd/req`` message from start to its last answer."""
        received_ms = self._clock()
        try:
            parsed = parse_topic(message.topic)
        except ContractError as exc:
            log.warning("ignoring a message on %s: %s", message.topic, exc)
            return
        target = self._targets.get(parsed.device)
        if target is None or parsed.channel is not Channel.COMMAND_REQUEST:
            log.warning("ignoring %s: not a command request for a device of this edge",
                        message.topic)
            return
        device = target.device
        reply_to = _response_topic(message.response_topic, device)
        correlation = message.correlation_data
        try:
            request = decode_request(message.payload)
        except MalformedCommand as exc:
            self._malformed(device, message, exc, reply_to, received_ms)
            return
        if self._resend_if_seen(request.id, device, reply_to, correlation):
            return
        refusal = (check(request, target.policy, received_ms)
                   or target.executor.precheck(device, request))
        if refusal is not None:
            self._answer(device, message, request.action, received_ms, reply_to,
                         ResponseStatus.REJECTED, request.id, refusal.reason, refusal.detail)
            return
        self._answer(device, message, request.action, received_ms, reply_to,
                     ResponseStatus.ACCEPTED, request.id)
        try:
            done = target.executor.execute(device, request)
        except ExecutionError as exc:
            log.warning("command %s (%s) on %s failed: %s", request.id, request.action,
                        device, exc)
            status, reason, detail = ResponseStatus.FAILED, exc.reason.value, exc.detail
        except Exception as exc:
            log.exception("command %s (%s) on %s raised", request.id, request.action, device)
            status, reason, detail = ResponseStatus.FAILED, Reason.EXECUTION_ERROR.value, repr(exc)
        else:
            status, reason, detail = ResponseStatus.DONE, done.reason, done.detail
        self._answer(device, message, request.action, received_ms, reply_to, status,
                     request.id, reason, detail)

    def _malformed(self, device: DeviceId, message: InboundMessage, exc: MalformedCommand,
                   reply_to: str, received_ms: int) -> None:
        log.warning("malformed command on %s: %s", message.topic, exc.detail)
        if exc.command_id is None:
            # Without an id there is nothing to keep or deduplicate: answer and forget.
            answer = CommandResponse("", ResponseStatus.REJECTED, Reason.MALFORMED, exc.detail,
                                     self._clock())
            self._reply(reply_to, answer, message.correlation_data)
            return
        if self._resend_if_seen(exc.command_id, device, reply_to, message.correlation_data):
            return
        self._answer(device, message, None, received_ms, reply_to, ResponseStatus.REJECTED,
                     exc.command_id, Reason.MALFORMED, exc.detail)

    def _resend_if_seen(self, command_id: str, device: DeviceId, reply_to: str,
                        correlation: bytes | None) -> bool:
        logged = self.log.get(command_id)
        if logged is None:
            return False
        if logged.device != device_path(device):
            answer = CommandResponse(command_id, ResponseStatus.REJECTED, Reason.MALFORMED,
                                     f"id already used for device {logged.device}",
                                     self._clock())
        else:
            answer = logged.answer
            log.info("command %s seen before: answering %s again", command_id,
                     answer.status.value)
            self.log.note_resent(answer)
        self._reply(reply_to, answer, correlation)
        return True

    def _answer(self, device: DeviceId, message: InboundMessage, action: str | None,
                received_ms: int, reply_to: str, status: ResponseStatus, command_id: str,
                reason: str = "", detail: str = "") -> None:
        answer = CommandResponse(command_id, status, reason, detail, self._clock())
        # Logged before it is published: after a crash in between, a redelivered request
        # finds the answer in the log and re-sends it instead of acting again.
        self.log.record(device, message.payload, action, received_ms, reply_to,
                        message.correlation_data, answer)
        self._reply(reply_to, answer, message.correlation_data)

    def _reply(self, topic: str, answer: CommandResponse, correlation: bytes | None) -> None:
        if self._connection is None:
            raise RuntimeError("CommandHandler.start() was not called")
        self._connection.respond(topic, answer.encode(), correlation_data=correlation)

    def _device(self, path: str) -> DeviceId:
        estate, facility, device = path.split("/")
        return DeviceId(estate, facility, device)


def _response_topic(requested: str | None, device: DeviceId) -> str:
    """The request's Response Topic if it can be published to, else the device's cmd/res."""
    if requested and "+" not in requested and "#" not in requested and "\0" not in requested:
        return requested
    return device.topic(Channel.COMMAND_RESPONSE)
