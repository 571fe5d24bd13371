"""Remote commands, contract v1: request and response payloads, the policy, the life cycle.

A command travels as MQTT 5 request/response (docs/commands.md): the control room publishes
a ``CommandRequest`` on the device's ``cmd/req`` topic with a Response Topic and Correlation
Data, and the device answers ``CommandResponse`` messages (``accepted``, then ``done`` or
``failed``; or only ``rejected``) on that Response Topic with the Correlation Data echoed.

Everything here is pure: decoding, the per-asset ``CommandPolicy`` and its validator
``check``, and the control room's ``CommandState`` machine. Errors::

    PayloadError (estate.errors)
    └── MalformedCommand   a request or response that cannot be read; carries the command id
                           when one could be read, so that the answer can still name it
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

import orjson

from estate.errors import ConfigError, PayloadError

ACTIONS: Final[Mapping[str, str]] = {
    "set_power_kw": "set an asset's active power setpoint in kW (a genset's output, a "
                    "flexible load's draw)",
    "set_battery_kw": "set a battery's power in kW: positive charges, negative discharges",
    "start": "start an asset (a genset, a pump)",
    "stop": "stop an asset",
    "set_level_setpoint": "set the level in m a pump keeps a tank at",
}
"""The actions contract v1 knows, with what each means. Anything else is ``unknown-action``."""

# Commands are a handful of fields: 16 KiB is generous and keeps a hostile payload cheap.
MAX_PAYLOAD_BYTES: Final = 16 * 1024
MAX_PARAMS: Final = 32
MAX_STRING: Final = 256
MAX_DETAIL: Final = 1024
# 2001-09-09 in ms: a smaller deadline is a time in seconds sent by mistake.
MIN_EPOCH_MS: Final = 1_000_000_000_000
# Year 10000 in ms: beyond it a time is garbage.
MAX_EPOCH_MS: Final = 253_402_300_800_000

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_REASON = re.compile(r"[a-z][a-z0-9-]{0,63}")


class Reason(StrEnum):
    """The reason codes of contract v1 (docs/commands.md lists each with its meaning)."""

    MALFORMED = "malformed"
    EXPIRED = "expired"
    UNKNOWN_ACTION = "unknown-action"
    NOT_ALLOWED = "not-allowed"
    BAD_PARAM = "bad-param"
    OUT_OF_RANGE = "out-of-range"
    INVALID_STATE = "invalid-state"
    CLAMPED = "clamped"
    DEVICE_UNREACHABLE = "device-unreachable"
    DEVICE_ERROR = "device-error"
    INTERRUPTED = "interrupted"
    EXECUTION_ERROR = "execution-error"
    TIMED_OUT = "timed-out"
    BROKER_REFUSED = "broker-refused"


class ResponseStatus(StrEnum):
    """What a device says about a command."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DONE = "done"
    FAILED = "failed"


class MalformedCommand(PayloadError):
    """A command request or response that cannot be read."""

    def __init__(self, detail: str, command_id: str | None = None) -> None:
        super().__init__(Reason.MALFORMED.value, detail)
        self.command_id = command_id


ParamValue = float | int | str


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command as it travels on ``cmd/req``."""

    id: str
    action: str
    params: Mapping[str, ParamValue]
    deadline_ms: int
    issued_by: str

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "action": self.action, "params": dict(self.params),
                             "deadline_ms": self.deadline_ms, "issued_by": self.issued_by})


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """A device's answer as it travels on the Response Topic."""

    id: str
    status: ResponseStatus
    reason: str = ""
    detail: str = ""
    at_ms: int = 0

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "status": self.status.value, "reason": self.reason,
                             "detail": self.detail[:MAX_DETAIL], "at_ms": self.at_ms})


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a command will not be carried out."""

    reason: Reason
    detail: str


def _load_object(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedCommand(f"{what} of {len(payload)} bytes, the limit is "
                               f"{MAX_PAYLOAD_BYTES}")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedCommand(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedCommand(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _command_id(body: Mapping[str, Any], allow_empty: bool = False) -> str:
    value = body.get("id")
    if allow_empty and value == "":
        return ""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise MalformedCommand(f"id must be a lowercase UUID string, got {value!r:.80}")
    return value


def _epoch_ms(body: Mapping[str, Any], name: str, command_id: str) -> int:
    value = body.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedCommand(f"{name} must be an integer (ms since 1970), got {value!r:.80}",
                               command_id)
    if not MIN_EPOCH_MS <= value < MAX_EPOCH_MS:
        raise MalformedCommand(f"{name} {value} is not a time in ms since 1970 "
                               "(seconds sent by mistake?)", command_id)
    return value


def _params(value: object, command_id: str) -> dict[str, ParamValue]:
    if not isinstance(value, dict):
        raise MalformedCommand(f"params must be a JSON object, got {type(value).__name__}",
                               command_id)
    if len(value) > MAX_PARAMS:
        raise MalformedCommand(f"{len(value)} params, the limit is {MAX_PARAMS}", command_id)
    params: dict[str, ParamValue] = {}
    for name, item in value.items():
        if not _NAME.fullmatch(name):
            raise MalformedCommand(f"param name {name!r:.80} is not [a-z][a-z0-9_]{{0,63}}",
                                   command_id)
        if isinstance(item, bool) or not isinstance(item, (int, float, str)):
            raise MalformedCommand(f"param {name} must be a number or a string, "
                                   f"got {type(item).__name__}", command_id)
        if isinstance(item, str) and len(item) > MAX_STRING:
            raise MalformedCommand(f"param {name} is longer than {MAX_STRING} characters",
                                   command_id)
        if isinstance(item, float) and not math.isfinite(item):
            raise MalformedCommand(f"param {name} is not finite", command_id)
        params[name] = item
    return params


def decode_request(payload: bytes) -> CommandRequest:
    """Read a ``cmd/req`` payload; raise ``MalformedCommand`` (with the id when readable)."""
    body = _load_object(payload, "command request")
    command_id = _command_id(body)
    action = body.get("action")
    if not isinstance(action, str) or not _NAME.fullmatch(action):
        raise MalformedCommand(f"action must be [a-z][a-z0-9_]{{0,63}}, got {action!r:.80}",
                               command_id)
    params = _params(body.get("params", {}), command_id)
    deadline_ms = _epoch_ms(body, "deadline_ms", command_id)
    issued_by = body.get("issued_by")
    if not isinstance(issued_by, str) or not 1 <= len(issued_by) <= MAX_STRING:
        raise MalformedCommand(f"issued_by must be 1-{MAX_STRING} characters, "
                               f"got {issued_by!r:.80}", command_id)
    return CommandRequest(command_id, action, params, deadline_ms, issued_by)


def decode_response(payload: bytes) -> CommandResponse:
    """Read a ``cmd/res`` payload; raise ``MalformedCommand``.

    The id may be empty only in a ``rejected`` answer to a request whose id was unreadable.
    """
    body = _load_object(payload, "command response")
    command_id = _command_id(body, allow_empty=True)
    try:
        status = ResponseStatus(str(body.get("status")))
    except ValueError as exc:
        raise MalformedCommand(f"status must be one of {[s.value for s in ResponseStatus]}, "
                               f"got {body.get('status')!r:.80}", command_id) from exc
    if not command_id and status is not ResponseStatus.REJECTED:
        raise MalformedCommand("only a rejection may have an empty id")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or (reason and not _REASON.fullmatch(reason)):
        raise MalformedCommand(f"reason must be a code [a-z][a-z0-9-]{{0,63}}, "
                               f"got {reason!r:.80}", command_id)
    detail = body.get("detail", "")
    if not isinstance(detail, str):
        raise MalformedCommand("detail must be a string", command_id)
    at_ms = _epoch_ms(body, "at_ms", command_id)
    return CommandResponse(command_id, status, reason, detail[:MAX_DETAIL], at_ms)


# --- policy -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ParamRule:
    """What one parameter of an action may be."""

    kind: Literal["number", "string"] = "number"
    minimum: float | None = None
    maximum: float | None = None
    choices: frozenset[str] | None = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class ActionRule:
    """An allowed action and its parameters; a parameter not listed is refused."""

    params: Mapping[str, ParamRule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """What one device (asset) may be told to do."""

    actions: Mapping[str, ActionRule]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.actions) - set(ACTIONS))
        if unknown:
            raise ConfigError(f"command policy names unknown actions {unknown}; "
                              f"contract v1 knows {sorted(ACTIONS)}")

    @classmethod
    def from_mapping(cls, raw: object) -> CommandPolicy:
        """A policy from its YAML/JSON form; raise ``ConfigError`` naming what is wrong.

        ``{set_battery_kw: {kw: {min: -250, max: 250}}, start: {}, stop: {}}``; a
        parameter may also say ``kind: string``, ``choices: [...]`` and ``required: false``.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError("a command policy is a mapping of action to parameters")
        actions: dict[str, ActionRule] = {}
        for action, params in raw.items():
            params = params or {}
            if not isinstance(params, Mapping):
                raise ConfigError(f"policy of {action!r}: parameters must be a mapping")
            actions[str(action)] = ActionRule(
                {str(name): _param_rule(action, name, rule) for name, rule in params.items()})
        return cls(actions)


def _param_rule(action: object, name: object, raw: object) -> ParamRule:
    where = f"policy of {action}.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a parameter rule is a mapping")
    extra = set(raw) - {"kind", "min", "max", "choices", "required"}
    if extra:
        raise ConfigError(f"{where}: unknown keys {sorted(map(str, extra))}")
    kind = raw.get("kind", "number")
    if kind not in ("number", "string"):
        raise ConfigError(f"{where}: kind must be number or string")
    bounds: list[float | None] = []
    for key in ("min", "max"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ConfigError(f"{where}: {key} must be a finite number")
        bounds.append(None if value is None else float(value))
    minimum, maximum = bounds
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ConfigError(f"{where}: min {minimum} is above max {maximum}")
    choices = raw.get("choices")
    if choices is not None and (not isinstance(choices, list)
                                or not all(isinstance(c, str) for c in choices)):
        raise ConfigError(f"{where}: choices must be a list of strings")
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise ConfigError(f"{where}: required must be true or false")
    return ParamRule("string" if kind == "string" else "number", minimum, maximum,
                     None if choices is None else frozenset(choices), required)


def check(command: CommandRequest, policy: CommandPolicy, now_ms: int) -> Rejection | None:
    """Why ``command`` must be refused at ``now_ms`` under ``policy``, or None to accept it.

    The deadline comes first: an expired command is refused whatever else it says.
    """
    if command.deadline_ms <= now_ms:
        return Rejection(Reason.EXPIRED, f"the deadline passed {now_ms - command.deadline_ms} "
                                         "ms before the command arrived")
    if command.action not in ACTIONS:
        return Rejection(Reason.UNKNOWN_ACTION, f"{command.action!r} is not an action of "
                                                f"contract v1 ({', '.join(sorted(ACTIONS))})")
    rule = policy.actions.get(command.action)
    if rule is None:
        allowed = ", ".join(sorted(policy.actions)) or "nothing"
        return Rejection(Reason.NOT_ALLOWED, f"{command.action} is not allowed for this "
                                             f"device (allowed: {allowed})")
    for name in command.params:
        if name not in rule.params:
            return Rejection(Reason.BAD_PARAM, f"{command.action} takes no param {name!r}")
    for name, param in rule.params.items():
        if name not in command.params:
            if param.required:
                return Rejection(Reason.BAD_PARAM, f"{command.action} needs param {name!r}")
            continue
        refusal = _check_param(name, command.params[name], param)
        if refusal is not None:
            return refusal
    return None


def _check_param(name: str, value: ParamValue, rule: ParamRule) -> Rejection | None:
    if rule.kind == "string":
        if not isinstance(value, str):
            return Rejection(Reason.BAD_PARAM, f"param {name} must be a string")
        if rule.choices is not None and value not in rule.choices:
            return Rejection(Reason.OUT_OF_RANGE, f"{name}={value!r} is not one of "
                                                  f"{sorted(rule.choices)}")
        return None
    if isinstance(value, str):
        return Rejection(Reason.BAD_PARAM, f"param {name} must be a number")
    if rule.minimum is not None and value < rule.minimum:
        return Rejection(Reason.OUT_OF_RANGE, f"{name}={value:g} is below the minimum "
                                              f"{rule.minimum:g}")
    if rule.maximum is not None and value > rule.maximum:
        return Rejection(Reason.OUT_OF_RANGE, f"{name}={value:g} is above the maximum "
                                              f"{rule.maximum:g}")
    return None


# --- the control room's view of a command ---------------------------------------------------

class CommandState(StrEnum):
    """Where a command is, as the control room tracks it."""

    PENDING = "pending"      # recorded, not yet confirmed published
    SENT = "sent"            # the broker has it (PUBACK)
    ACCEPTED = "accepted"    # the device will carry it out
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # no final answer before the deadline (plus grace)
    REFUSED = "refused"      # the broker would not take it (its ACL), so no device has it


FINAL_STATES: Final = frozenset({CommandState.DONE, CommandState.REJECTED, CommandState.FAILED,
                                 CommandState.TIMED_OUT, CommandState.REFUSED})
_RANK: Final = {CommandState.PENDING: 0, CommandState.SENT: 1, CommandState.ACCEPTED: 2}
_BY_STATUS: Final = {ResponseStatus.ACCEPTED: CommandState.ACCEPTED,
                     ResponseStatus.REJECTED: CommandState.REJECTED,
                     ResponseStatus.DONE: CommandState.DONE,
                     ResponseStatus.FAILED: CommandState.FAILED}


def state_for(status: ResponseStatus) -> CommandState:
    """The state a device's answer moves a command to."""
    return _BY_STATUS[status]


def can_move(current: CommandState, to: CommandState) -> bool:
    """Whether a command in ``current`` may move to ``to``.

    States only move forward; a final state never changes. Answers can arrive out of order
    (``accepted`` after ``done`` on a redelivery, ``accepted`` before the PUBACK was seen),
    so a backward or repeated move is refused rather than applied.
    """
    if current in FINAL_STATES or current == to:
        return False
    return to in FINAL_STATES or _RANK[to] > _RANK[current]
