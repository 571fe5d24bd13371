"""Problems to and from JSON, for the golden files (infinity is written as "inf")."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import numpy as np

from dispatch.optimiser import (
    PV,
    Battery,
    DeferrableLoad,
    DemandResponseWindow,
    EstateProblem,
    Genset,
    PumpTank,
    ThermalStorage,
)

KINDS: dict[str, type] = {"batteries": Battery, "deferrables": DeferrableLoad,
                          "gensets": Genset, "thermal": ThermalStorage, "pumps": PumpTank,
                          "pv": PV, "dr_windows": DemandResponseWindow}


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _encode(value.tolist())
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, np.floating | np.integer | np.bool_):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _number(value: Any) -> Any:
    if isinstance(value, list):
        return np.array([_number(v) for v in value], dtype=float)
    if value in ("inf", "-inf"):
        return float(value)
    return value


def to_json(problem: EstateProblem) -> dict[str, Any]:
    encoded: dict[str, Any] = _encode(problem)
    return encoded


def from_json(data: dict[str, Any]) -> EstateProblem:
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name in KINDS:
            cls = KINDS[name]
            fields[name] = tuple(cls(**{k: _number(v) for k, v in item.items()})
                                 for item in value)
        elif name == "start":
            fields[name] = datetime.fromisoformat(value)
        elif name == "facilities":
            fields[name] = tuple(value)
        elif name == "labels":
            fields[name] = dict(value)
        else:
            fields[name] = _number(value)
    return EstateProblem(**fields)
