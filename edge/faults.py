"""Faults the simulator injects, so alarms and ingest's guards have something to catch.

A fault belongs to one meter and lasts from ``start_ms`` until ``end_ms`` (``None``: for
good). Two kinds change the meter's state and so everything after them: a **leak** adds a
flow that the volume counter integrates, a **counter reset** sets the meter's counters to 0
when the simulation first steps across ``start_ms``. Four change only what the meter
reports while they last: **offline** (no readings), **spike** (the first quantity times
``magnitude``), **stuck** (the values of the fault's first step again and again) and
**clock skew** (timestamps shifted by ``magnitude`` seconds).

Where the estate describes networks (``estate.networks``), a leak on a meter that feeds
others escapes between it and its children: the parent reads more than they do. An
**outage** cuts the supply through its meter: the meter and every meter below it in each
of its networks draw nothing while it lasts. Below an electricity outage the meters lose
their own supply too and fall silent; below a water or gas outage they keep reporting, a
flow of zero (and water pressure gone). A tank below a water outage keeps supplying what
is below it from its storage, so the cut stops there; an outage on the tank itself cuts
its outlet.

Faults come from the estate file (``faults:`` under a meter) or are injected by the command
line (``EDGE_FAULTS``) and tests. They hold no randomness, so the simulator stays
deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict

from estate.errors import ConfigError
from estate.model import EstateSpec, FaultKind, FaultSpec
from estate.networks import NetworkTree, meter_ref
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


@dataclass(frozen=True, slots=True)
class Reach:
    """What an outage of one meter cuts: the meters that draw nothing (``dry``, the meter
    included) and, of those, the ones that lose their own supply and fall ``silent``."""

    dry: frozenset[DeviceId]
    silent: frozenset[DeviceId]


def _below(tree: NetworkTree, meter: str) -> list[str]:
    """``meter`` and what it supplies in ``tree``: its subtree, less a water network's
    tanks below it (and their subtrees), which keep supplying from storage."""
    out, stack = [meter], list(tree.children.get(meter, ()))
    while stack:
        m = stack.pop()
        if tree.utility == "water" and tree.kinds[m] == "tank":
            continue
        out.append(m)
        stack.extend(tree.children.get(m, ()))
    return out


def outage_reach(spec: EstateSpec, faults: Iterable[Fault]) -> dict[DeviceId, Reach]:
    """What an outage of each meter that has an outage fault cuts, over the estate's
    networks. A meter in no network cuts only itself (and falls silent if it is
    electrical: its own supply is gone)."""
    trees = spec.network_trees()
    out: dict[DeviceId, Reach] = {}
    for fault in faults:
        if fault.kind != "outage" or fault.device in out:
            continue
        device = fault.device
        ref = meter_ref(device.facility, device.device)
        dry: set[str] = {ref}
        silent: set[str] = set()
        holding = [t for t in trees if ref in t]
        for tree in holding:
            below = _below(tree, ref)
            dry.update(below)
            if tree.utility == "electricity":
                silent.update(below)
        if not holding and spec.meter_kinds()[ref] not in ("water", "gas", "tank"):
            silent.add(ref)

        def ids(refs: set[str]) -> frozenset[DeviceId]:
            return frozenset(DeviceId(spec.id, *r.split("/", 1)) for r in refs)

        out[device] = Reach(ids(dry), ids(silent))
    return out


@dataclass
class FaultPlan:
    """The faults of one simulation, what their outages reach, and the memory the stuck
    ones need."""

    faults: list[Fault]
    reach: Mapping[DeviceId, Reach] = field(default_factory=dict)
    _by_device: dict[DeviceId, list[Fault]] = field(default_factory=dict, init=False)
    _outages: list[Fault] = field(default_factory=list, init=False)
    _stuck: dict[int, list[Reading]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for fault in self.faults:
            self._by_device.setdefault(fault.device, []).append(fault)
            if fault.kind == "outage":
                if fault.device not in self.reach:
                    raise ConfigError(f"outage of {fault.device}: its reach is unknown")
                self._outages.append(fault)
        self._affected = set(self._by_device).union(
            *(r.silent for r in self.reach.values()))

    def __bool__(self) -> bool:
        return bool(self.faults)

    @property
    def devices(self) -> set[DeviceId]:
        """Every meter whose readings a fault may change (outages: the silenced ones)."""
        return set(self._affected)

    def cut(self, time_ms: int) -> set[DeviceId]:
        """Meters that draw nothing at ``time_ms``: below an active outage."""
        return set().union(*(self.reach[f.device].dry for f in self._outages
                             if f.active(time_ms)))

    def silenced(self, time_ms: int) -> set[DeviceId]:
        """Meters that an active outage leaves without supply, so without readings."""
        return set().union(*(self.reach[f.device].silent for f in self._outages
                             if f.active(time_ms)))

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
        """True if the meter sends nothing at ``time_ms`` (offline, or silenced by an
        outage)."""
        return any(f.kind == "offline" and f.active(time_ms)
                   for f in self._by_device.get(device, ())) or any(
            device in self.reach[f.device].silent for f in self._outages
            if f.active(time_ms))

    def apply(self, device: DeviceId, readings: list[Reading], time_ms: int) -> list[Reading]:
        """What the meter reports at ``time_ms`` instead of ``readings``."""
        if any(device in self.reach[f.device].silent for f in self._outages
               if f.active(time_ms)):
            return []
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
