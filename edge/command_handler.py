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
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from estate.commands import (
    CommandPolicy,
    CommandRequest,
    CommandResponse,
    MalformedCommand,
    Reason,
    Rejection,
    ResponseStatus,
    check,
    decode_request,
)
from estate.errors import ConfigError, ContractError, DeviceError
from estate.ports import Handling, InboundMessage, Messaging
from estate.topics import Channel, DeviceId, parse_topic

log = logging.getLogger(__name__)

DEFAULT_LOG_FILE: Final = "edge_commands.sqlite"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- executors ------------------------------------------------------------------------------

class ExecutionError(DeviceError):
    """A command could not be carried out; ``reason`` is a code of docs/commands.md."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Completion:
    """A command carried out; a reason (``clamped``) qualifies what was done."""

    reason: str = ""
    detail: str = ""


class Executor(Protocol):
    """Carries commands out on devices."""

    def precheck(self, device: DeviceId, command: CommandRequest) -> Rejection | None:
        """Why the device cannot take ``command`` now (its state, its wiring), or None."""

    def execute(self, device: DeviceId, command: CommandRequest) -> Completion:
        """Carry ``command`` out; raise ``ExecutionError`` when that fails."""


DataType = Literal["uint16", "int16", "uint32", "int32", "float32"]
_DATATYPES: Final = {
    "uint16": ModbusTcpClient.DATATYPE.UINT16, "int16": ModbusTcpClient.DATATYPE.INT16,
    "uint32": ModbusTcpClient.DATATYPE.UINT32, "int32": ModbusTcpClient.DATATYPE.INT32,
    "float32": ModbusTcpClient.DATATYPE.FLOAT32,
}
_INT_RANGES: Final = {"uint16": (0, 2**16 - 1), "int16": (-(2**15), 2**15 - 1),
                      "uint32": (0, 2**32 - 1), "int32": (-(2**31), 2**31 - 1)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterWrite(_Strict):
    """One holding-register write of an action.

    The register holds ``value / scale`` (the same convention as the polling maps, where
    a value is ``raw * scale``): a param ``kw`` of 12.5 with scale 0.1 is written as 125.
    A write without ``param`` writes the constant ``value`` (``start`` writes 1).
    """

    address: int = Field(ge=0, le=65_535)
    type: DataType = "int16"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    param: str | None = None
    value: float = 0.0

    @model_validator(mode="after")
    def _usable(self) -> RegisterWrite:
        if self.scale == 0:
            raise ValueError("scale must not be zero")
        return self


class ModbusTarget(_Strict):
    """Where a device answers Modbus and which registers each action writes."""

    host: str
    port: int = Field(502, ge=1, le=65_535)
    unit_id: int = Field(1, ge=0, le=255)
    actions: dict[str, list[RegisterWrite]] = Field(min_length=1)


def load_command_map(path: Path) -> ModbusTarget:
    """Load a device's command register map from YAML; raise ``ConfigError`` on any fault."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ModbusTarget.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read command map {path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid command map {path}: {exc}") from exc


def encode_write(write: RegisterWrite, command: CommandRequest) -> list[int]:
    """The registers ``write`` puts on the wire for ``command``."""
    value = command.params.get(write.param, None) if write.param else write.value
    if value is None or isinstance(value, str):
        raise ExecutionError(Reason.BAD_PARAM, f"register {write.address} needs numeric "
                                               f"param {write.param!r}")
    raw: float = value / write.scale
    if write.type in _INT_RANGES:
        raw = round(raw)
        low, high = _INT_RANGES[write.type]
        if not low <= raw <= high:
            raise ExecutionError(Reason.OUT_OF_RANGE, f"{value} / {write.scale} = {raw} does not "
                                                      f"fit {write.type} at {write.address}")
    registers: list[int] = ModbusTcpClient.convert_to_registers(
        raw, data_type=_DATATYPES[write.type], word_order=write.word_order)
    return registers


class ModbusExecutor:
    """Carries commands out by writing holding registers of Modbus TCP devices."""

    def __init__(self, targets: Mapping[DeviceId, ModbusTarget], timeout_s: float = 2.0) -> None:
        self._targets = dict(targets)
        self._timeout_s = timeout_s
        self._clients: dict[DeviceId, ModbusTcpClient] = {}

    def precheck(self, device: DeviceId, command: CommandRequest) -> Rejection | None:
        target = self._targets.get(device)
        if target is None or command.action not in target.actions:
            return Rejection(Reason.NOT_ALLOWED, f"no register is mapped for {command.action} "
                                                 f"on {device.device}")
        return None

    def execute(self, device: DeviceId, command: CommandRequest) -> Completion:
        target = self._targets[device]
        writes = [(w.address, encode_write(w, command)) for w in target.actions[command.action]]
        client = self._client(device, target)
        try:
            if not client.connect():  # type: ignore[no-untyped-call]
                raise ExecutionError(Reason.DEVICE_UNREACHABLE,
                                     f"cannot connect to {target.host}:{target.port}")
            for address, registers in writes:
                response = client.write_registers(address, registers, device_id=target.unit_id)
                if response.isError():
                    raise ExecutionError(Reason.DEVICE_ERROR, f"writing register {address} of "
                                                              f"unit {target.unit_id}: {response}")
        except (ModbusException, OSError) as exc:
            self._drop(device)
            raise ExecutionError(Reason.DEVICE_UNREACHABLE, str(exc)) from exc
        except ExecutionError:
            self._drop(device)
            raise
        return Completion(detail=", ".join(f"register {a} <- {r}" for a, r in writes))

    def _client(self, device: DeviceId, target: ModbusTarget) -> ModbusTcpClient:
        client = self._clients.get(device)
        if client is None:
            client = ModbusTcpClient(target.host, port=target.port, timeout=self._timeout_s,
                                     retries=0)
            self._clients[device] = client
        return client

    def _drop(self, device: DeviceId) -> None:
        client = self._clients.pop(device, None)
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        for device in list(self._clients):
            self._drop(device)


@dataclass
class SimulatedBattery:
    max_kw: float
    soc_pct: float = 50.0
    # A battery is kept off its extremes to protect the cells; the bounds are typical BMS ones.
    min_soc_pct: float = 5.0
    max_soc_pct: float = 95.0
    setpoint_kw: float = 0.0


@dataclass
class SimulatedGenset:
    max_kw: float
    running: bool = False
    setpoint_kw: float = 0.0


@dataclass
class SimulatedPump:
    running: bool = False
    level_setpoint_m: float = 0.0


SimulatedAsset = SimulatedBattery | SimulatedGenset | SimulatedPump
_SIM_ACTIONS: Final[dict[type, frozenset[str]]] = {
    SimulatedBattery: frozenset({"set_battery_kw"}),
    SimulatedGenset: frozenset({"start", "stop", "set_power_kw"}),
    SimulatedPump: frozenset({"start", "stop", "set_level_setpoint"}),
}


def _number(command: CommandRequest, name: str) -> float:
    value = command.params.get(name)
    if value is None or isinstance(value, str):
        raise ExecutionError(Reason.BAD_PARAM, f"{command.action} needs numeric param {name!r}")
    return float(value)


class SimulatedAssetExecutor:
    """Drives in-memory assets: battery setpoints clamped by SoC, gensets, pumps.

    Params: ``set_battery_kw`` and ``set_power_kw`` take ``kw``, ``set_level_setpoint``
    takes ``m``. The asset objects are the live state; read them through ``asset()``.
    """

    def __init__(self, assets: Mapping[DeviceId, SimulatedAsset]) -> None:
        self._assets = dict(assets)
        self._lock = threading.Lock()

    def asset(self, device: DeviceId) -> SimulatedAsset:
        return self._assets[device]

    def precheck(self, device: DeviceId, command: CommandRequest) -> Rejection | None:
        asset = self._assets.get(device)
        if asset is None or command.action not in _SIM_ACTIONS[type(asset)]:
            return Rejection(Reason.NOT_ALLOWED, f"{device.device} cannot {command.action}")
        if (isinstance(asset, SimulatedGenset) and command.action == "set_power_kw"
                and not asset.running):
            return Rejection(Reason.INVALID_STATE, "the genset is stopped: start it first")
        return None

    def execute(self, device: DeviceId, command: CommandRequest) -> Completion:
        with self._lock:
            asset = self._assets[device]
            if isinstance(asset, SimulatedBattery):
                return _set_battery(asset, _number(command, "kw"))
            if command.action in ("start", "stop"):
                asset.running = command.action == "start"
                if isinstance(asset, SimulatedGenset) and not asset.running:
                    asset.setpoint_kw = 0.0
                return Completion()
            if isinstance(asset, SimulatedGenset):
                wanted = _number(command, "kw")
                asset.setpoint_kw = min(max(wanted, 0.0), asset.max_kw)
                return _clamped(wanted, asset.setpoint_kw, "the genset's rating")
            asset.level_setpoint_m = _number(command, "m")
            return Completion()


def _set_battery(battery: SimulatedBattery, wanted: float) -> Completion:
    applied = min(max(wanted, -battery.max_kw), battery.max_kw)
    why = "the battery's rating"
    if applied > 0 and battery.soc_pct >= battery.max_soc_pct:
        applied, why = 0.0, f"state of charge {battery.soc_pct:g} % (full)"
    elif applied < 0 and battery.soc_pct <= battery.min_soc_pct:
        applied, why = 0.0, f"state of charge {battery.soc_pct:g} % (empty)"
    battery.setpoint_kw = applied
    return _clamped(wanted, applied, why)


def _clamped(wanted: float, applied: float, why: str) -> Completion:
    if applied == wanted:
        return Completion()
    return Completion(Reason.CLAMPED, f"asked {wanted:g} kW, set {applied:g} kW: limited by {why}")


# --- the edge's audit trail -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """A command as the edge log holds it, with the last answer given."""

    id: str
    device: str
    response_topic: str
    correlation_data: bytes | None
    answer: CommandResponse


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, action TEXT, request BLOB NOT NULL,
    received_ms INTEGER NOT NULL, response_topic TEXT NOT NULL, correlation_data BLOB,
    status TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, answered_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, at_ms INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, resent INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_id ON answers (id);
"""


class CommandLog:
    """Every command id the edge has answered and every answer it gave (SQLite)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def get(self, command_id: str) -> LoggedCommand | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, device, response_topic, correlation_data, status, reason, detail,"
                " answered_ms FROM commands WHERE id = ?", (command_id,)).fetchone()
        if row is None:
            return None
        return LoggedCommand(row[0], row[1], row[2], row[3],
                             CommandResponse(row[0], ResponseStatus(row[4]), row[5], row[6],
                                             row[7]))

    def record(self, device: DeviceId, request: bytes, action: str | None, received_ms: int,
               response_topic: str, correlation_data: bytes | None,
               answer: CommandResponse) -> None:
        """Record a command's first answer (the row) or a later one (an update)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET status = excluded.status, reason = excluded.reason,"
                " detail = excluded.detail, answered_ms = excluded.answered_ms",
                (answer.id, _path(device), action, request, received_ms, response_topic,
                 correlation_data, answer.status.value, answer.reason, answer.detail,
                 answer.at_ms))
            self._insert_answer(answer, resent=False)

    def note_resent(self, answer: CommandResponse) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._insert_answer(answer, resent=True)

    def _insert_answer(self, answer: CommandResponse, resent: bool) -> None:
        self._db.execute("INSERT INTO answers (id, at_ms, status, reason, detail, resent)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         (answer.id, answer.at_ms, answer.status.value, answer.reason,
                          answer.detail, int(resent)))

    def answers(self, command_id: str) -> list[tuple[str, str, bool]]:
        """(status, reason, resent) of every answer given to ``command_id``, in order."""
        with self._lock:
            rows = self._db.execute("SELECT status, reason, resent FROM answers WHERE id = ?"
                                    " ORDER BY seq", (command_id,)).fetchall()
        return [(status, reason, bool(resent)) for status, reason, resent in rows]

    def unfinished(self) -> list[LoggedCommand]:
        """Commands accepted but never finished: the edge stopped while carrying them out."""
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM commands WHERE status = ?", (ResponseStatus.ACCEPTED.value,))]
        return [c for c in map(self.get, ids) if c is not None]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _path(device: DeviceId) -> str:
    return f"{device.estate}/{device.facility}/{device.device}"


# --- the handler ----------------------------------------------------------------------------

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
        if logged.device != _path(device):
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
