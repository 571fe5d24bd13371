"""Register maps: where a meter model keeps each quantity in its Modbus holding registers.

A map is loaded from YAML and validated on load, so a typo in a quantity, a unit of the
wrong dimension or two points sharing a register stop start-up with a message that names
the point. Each point is read as ``raw * scale`` in ``unit``; ingest converts the unit to
the quantity's canonical one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from estate.errors import ConfigError
from estate.units import QUANTITIES, UNITS

DataType = Literal["uint16", "int16", "uint32", "int32", "float32", "uint64", "int64"]
WordOrder = Literal["big", "little"]

WORDS: dict[str, int] = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2,
                         "uint64": 4, "int64": 4}
"""How many 16-bit registers each data type spans."""

# The SenML local name is ``quantity.channel``, so a channel holds no dot.
_CHANNEL = re.compile(r"[A-Za-z0-9_-]{1,64}")

MAPS_DIR = Path(__file__).with_name("maps")
GENERIC_THREE_PHASE = MAPS_DIR / "generic_three_phase.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(_Strict):
    """One value of a meter: where it is, how it is encoded and what it measures."""

    quantity: str
    channel: str = ""
    address: int = Field(ge=0, le=65_535)
    type: DataType
    word_order: WordOrder = "big"
    scale: float = 1.0
    unit: str

    @property
    def words(self) -> int:
        return WORDS[self.type]

    @property
    def end(self) -> int:
        """The first address after this point's registers."""
        return self.address + self.words

    @field_validator("quantity")
    @classmethod
    def _known_quantity(cls, value: str) -> str:
        if value not in QUANTITIES:
            raise ValueError(f"unknown quantity {value!r}")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value and not _CHANNEL.fullmatch(value):
            raise ValueError(f"channel {value!r} is not 1-64 of [A-Za-z0-9_-]")
        return value

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be zero")
        return value

    @model_validator(mode="after")
    def _unit_fits(self) -> Point:
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}")
        quantity = QUANTITIES[self.quantity]
        if UNITS[self.unit].dimension != quantity.dimension:
            raise ValueError(f"unit {self.unit!r} does not measure {self.quantity} "
                             f"({quantity.dimension})")
        if self.end > 65_536:
            raise ValueError(f"{self.type} at {self.address} runs past register 65535")
        return self


class MeterMap(_Strict):
    """The register map of one meter model."""

    model: str = Field(min_length=1)
    description: str = ""
    points: list[Point] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> MeterMap:
        names: set[tuple[str, str]] = set()
        taken: dict[int, Point] = {}
        for point in self.points:
            name = (point.quantity, point.channel)
            if name in names:
                raise ValueError(f"{_label(point)} appears twice")
            names.add(name)
            for address in range(point.address, point.end):
                if address in taken:
                    raise ValueError(f"{_label(point)} overlaps {_label(taken[address])} "
                                     f"at register {address}")
                taken[address] = point
        return self


def _label(point: Point) -> str:
    return f"{point.quantity}.{point.channel}" if point.channel else point.quantity


def load_map(path: Path) -> MeterMap:
    """Load and validate a register map; raise ``ConfigError`` naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read register map {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"register map {path} must be a mapping")
    try:
        return MeterMap.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid register map {path}: {exc}") from exc
