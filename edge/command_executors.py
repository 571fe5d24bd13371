"""What carries a command out at the edge: ``ModbusExecutor`` writes holding registers of a
real device (its register map for commands, ``ModbusTarget``), ``SimulatedAssetExecutor``
drives the simulator's in-memory assets. ``edge.command_handler`` decides; these act."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from estate.commands import (
    CommandRequest,
    Reason,
    Rejection,
)
from estate.errors import ConfigError, DeviceError
from estate.topics import DeviceId

log = logging.getLogger(__name__)


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
