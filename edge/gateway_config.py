"""The gateway's configuration files: its meters (host, unit, register map of each) and
the devices it takes commands for (policy and registers), both checked when they load, so a
bad file stops the gateway at start with a reason (docs/edge-gateway.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.command_executors import ModbusTarget
from edge.modbus import ModbusMeter
from edge.registers import MAPS_DIR, MeterMap, load_map
from estate.commands import CommandPolicy
from estate.errors import ConfigError, TopicError
from estate.topics import DeviceId

# --- the meters file -------------------------------------------------------------------

class MeterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    facility: str
    device: str
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    model: str = Field(min_length=1)


class MetersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meters: list[MeterEntry] = Field(min_length=1)


def find_map(model: str, base_dir: Path) -> Path:
    """The register map file for ``model``: a path ending in .yaml/.yml, or a map of
    ``edge/maps`` named by its file stem or its ``model`` field."""
    if model.endswith((".yaml", ".yml")):
        return base_dir / model
    for candidate in (MAPS_DIR / f"{model}.yaml", MAPS_DIR / f"{model.replace('-', '_')}.yaml"):
        if candidate.exists():
            return candidate
    known = sorted(p.stem for p in MAPS_DIR.glob("*.yaml"))
    raise ConfigError(f"no register map for model {model!r}; known: {', '.join(known)}")


def load_meters(path: Path, estate: str) -> list[ModbusMeter]:
    """Load and validate the meters file; raise ``ConfigError`` naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = MetersFile.model_validate(raw).meters
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read meters file {path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid meters file {path}: {exc}") from exc
    maps: dict[Path, MeterMap] = {}
    meters: list[ModbusMeter] = []
    seen: set[DeviceId] = set()
    for number, entry in enumerate(entries, 1):
        try:
            device = DeviceId(estate, entry.facility, entry.device)
        except TopicError as exc:
            raise ConfigError(f"meter {number} of {path}: {exc.detail}") from exc
        if device in seen:
            raise ConfigError(f"meter {number} of {path}: {entry.facility}/{entry.device} "
                              "appears twice")
        seen.add(device)
        map_path = find_map(entry.model, path.parent)
        if map_path not in maps:
            maps[map_path] = load_map(map_path)
        meters.append(ModbusMeter(device, entry.host, entry.port, entry.unit_id,
                                  maps[map_path]))
    return meters


# --- the commands file -----------------------------------------------------------------

class CommandDevice(BaseModel):
    """A device that takes commands: what it may be told and which registers each writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    facility: str
    device: str
    # The device's CommandPolicy in its YAML form, checked by CommandPolicy.from_mapping.
    policy: dict[str, Any]
    modbus: ModbusTarget


class CommandsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[CommandDevice] = Field(min_length=1)


def load_command_devices(path: Path, estate: str,
                         ) -> tuple[list[tuple[DeviceId, CommandPolicy]],
                                    dict[DeviceId, ModbusTarget]]:
    """Load and validate the commands file; raise ``ConfigError`` naming what is wrong.

    Returns each device with its policy, and the Modbus target that carries its commands
    out. An action the policy allows must have registers to write: otherwise every such
    command would be refused at run time, which a configuration check should say at start.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = CommandsFile.model_validate(raw).devices
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read commands file {path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid commands file {path}: {exc}") from exc
    policies: list[tuple[DeviceId, CommandPolicy]] = []
    targets: dict[DeviceId, ModbusTarget] = {}
    for number, entry in enumerate(entries, 1):
        where = f"device {number} of {path}"
        try:
            device = DeviceId(estate, entry.facility, entry.device)
        except TopicError as exc:
            raise ConfigError(f"{where}: {exc.detail}") from exc
        if device in targets:
            raise ConfigError(f"{where}: {entry.facility}/{entry.device} appears twice")
        try:
            policy = CommandPolicy.from_mapping(entry.policy)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        unmapped = sorted(set(policy.actions) - set(entry.modbus.actions))
        if unmapped:
            raise ConfigError(f"{where}: the policy allows {', '.join(unmapped)} but no "
                              "register is mapped for it under modbus.actions")
        policies.append((device, policy))
        targets[device] = entry.modbus
    return policies, targets
