"""Faults the simulator injects, so alarms and ingest's guards have something to catch.

A fault belongs to one meter and lasts from ``start_ms`` until ``end_ms`` (``None``: for
good). Two kinds change the meter's state and so everything after them: a **leak** adds a
flow that the volume counter integrates, a **counter reset** sets the meter's counters to 0
when the simulation first steps across ``start_ms``. Four change only what the meter
reports while they last: **offline** (no readings), **spike** (the first quantity times
``magnitude``), **stuck** (the values of the fault's first step again and again) and
**clock skew** (timestamps shifted by ``magnitude`` seconds).

Faults come from the estate file (``faults:`` under a meter) or are injected by the command
line (``EDGE_FAULTS``) and tests. They hold no randomness, so the simulator stays
deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict

from estate.errors import ConfigError
from estate.model import EstateSpec, FaultKind, FaultSpec
from estate.readings import Reading
from estate.topics import DeviceId

# A spike without a magnitude is a tenfold reading: far outside any profile, inside every
# quantity's plausible range for the sample meters.
DEFAULT_SPIKE_FACTOR: Final = 10.0


class InjectedFault(BaseModel):
    """A fault named by its meter, as the command line (``EDGE_FAULTS``) gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    facility: str
    meter: str
    kind: FaultKind
    start: AwareDatetime
    end: AwareDatetime | None = None
    magnitude: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    device: DeviceId
    kind: FaultKind
    start_ms: int
    end_ms: int | None = None
    magnitude: float = 0.0

    def active(self, time_ms: int) -> bool:
        return self.start_ms <= time_ms and (self.end_ms is None or time_ms < self.end_ms)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _fault(device: DeviceId, spec: FaultSpec | InjectedFault) -> Fault:
    end = None if spec.end is None else _ms(spec.end)
    if end is not None and end <= _ms(spec.start):
        raise ConfigError(f"fault {spec.kind} of {device}: end must be after start")
    return Fault(device, spec.kind, _ms(spec.start), end, spec.magnitude)


def estate_faults(spec: EstateSpec, injected: Iterable[InjectedFault] = ()) -> list[Fault]:
    """The faults of the estate file's meters and the injected ones, checked against it."""
    faults: list[Fault] = []
    known: set[DeviceId] = set()
    for device, meter, _facility in spec.devices():
        known.add(device)
        faults.extend(_fault(device, f) for f in meter.faults)
    for item in injected:
        device = DeviceId(spec.id, item.facility, item.meter)
        if device not in known:
            raise ConfigError(f"fault {item.kind} names meter {item.facility}/{item.meter}, "
                              f"which estate {spec.id!r} does not have")
        faults.append(_fault(device, item))
    return faults


@dataclass
class FaultPlan:
    """The faults of one simulation, and the memory the stuck ones need."""

    faults: list[Fault]
    _by_device: dict[DeviceId, list[Fault]] = field(default_factory=dict, init=False)
    _stuck: dict[int, list[Reading]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for fault in self.faults:
            self._by_device.setdefault(fault.device, []).append(fault)

    def __bool__(self) -> bool:
        return bool(self.faults)

    @property
    def devices(self) -> set[DeviceId]:
        return set(self._by_device)

    def leaks(self, time_ms: int) -> list[tuple[DeviceId, float]]:
        """Extra flow (m3/h) of each leaking meter at ``time_ms``."""
        return [(f.device, f.magnitude) for f in self.faults
                if f.kind == "leak" and f.active(time_ms)]

    def resets(self, last_ms: int | None, time_ms: int) -> list[DeviceId]:
        """Meters whose counter reset falls in ``(last_ms, time_ms]``."""
        if last_ms is None:
            return []
        return [f.device for f in self.faults
                if f.kind == "counter_reset" and last_ms < f.start_ms <= time_ms]

    def offline(self, device: DeviceId, time_ms: int) -> bool:
        return any(f.kind == "offline" and f.active(time_ms)
                   for f in self._by_device.get(device, ()))

    def apply(self, device: DeviceId, readings: list[Reading], time_ms: int) -> list[Reading]:
        """What the meter reports at ``time_ms`` instead of ``readings``."""
        out = readings
        for fault in self._by_device.get(device, ()):
            if not fault.active(time_ms):
                if fault.kind == "stuck":
                    self._stuck.pop(id(fault), None)
                continue
            if fault.kind == "offline":
                return []
            if fault.kind == "stuck":
                frozen = self._stuck.setdefault(id(fault), out)
                out = [r._replace(time_ms=time_ms) for r in frozen]
            elif fault.kind == "spike" and out:
                factor = fault.magnitude or DEFAULT_SPIKE_FACTOR
                out = [out[0]._replace(value=round(out[0].value * factor, 6)), *out[1:]]
        for fault in self._by_device.get(device, ()):
            if fault.kind == "clock_skew" and fault.active(time_ms):
                skew = round(fault.magnitude * 1000)
                out = [r._replace(time_ms=r.time_ms + skew) for r in out]
        return out
