"""A simulated estate: every meter of an estate description, deterministic for a seed.

Meters of one kind are stepped together as numpy arrays, so 10,000 meters step in
milliseconds. Loads follow their facility's shifts (a half-hour ramp into and out of
working hours, shifts that cross midnight, weekends at base load unless the facility works
them) with slow process variation and noise; HVAC follows a daily ambient temperature; PV
follows a clear-sky curve for the position of the estate's timezone, under clouds;
batteries charge at night and at midday and discharge in the evening peak within their
state of charge; gensets run only their weekly test; well pumps cycle with demand; tanks
fill by hysteresis and drain with use. Counters integrate their flows, so registers and
gauges agree. Faults (``edge.faults``) are applied on top.

**Networks.** Where the estate describes its networks (``estate.networks``), a meter that
feeds others reads what its children read plus its losses (a share of their throughput,
with a little noise well inside the network's tolerance) plus any leak of its own: the
balance holds until a fault breaks it. A step therefore runs in three phases: every
meter's own flow, then the parents from their children (water and gas networks first,
since a pump's flow sets its power), then the values and counters from the final flows.

**Determinism.** The noise is not drawn from a stream: it is a hash of (seed, the meter's
estate/facility/device identity, the time slot, the use). So a meter's readings depend only
on the seed, its identity, its own description and faults (and, for a parent in a network,
its children's), and the sequence of step times: the same seed and the same step times give
the same readings, and adding, removing or reordering other meters outside its subtree
never changes them. Gauges (power, flow, voltage...) depend on the
time alone; counters, a battery's charge and a tank's level on the times stepped before.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from operator import add
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from edge.faults import Fault, FaultPlan, estate_faults, outage_reach
from edge.meter_physics import (
    PUMP_KWH_PER_M3,
    Clock,
    Floats,
    Key,
    MeterGroup,
    init_state,
    own_flow,
    share_of,
    values_of,
)
from edge.signals import (
    Weather,
    clear_sky,
    identity_key,
    normal,
    smooth,
    timezone_position,
    uniform,
)
from estate.model import MEASURES, EstateSpec
from estate.readings import Reading
from estate.topics import DeviceId
from estate.units import QUANTITIES, Kind

# The grid's nominal frequency: the simulated meters wander around it.
NOMINAL_FREQUENCY: Final = 50.0
SHIFT_RAMP_H: Final = 0.5
# A network parent's losses wander by this share of themselves (one normal deviation):
# visible, and with 3 % of losses of a few percent far inside any balance tolerance.
LOSS_NOISE: Final = 0.1
_LEAKING_KINDS: Final = frozenset({"water", "gas", "pump"})

_new_reading = tuple.__new__


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a step builds its readings.

    A step of 10,000 meters allocates some 40,000 tuples, which sets off the collector's
    older generations again and again over everything the process holds: measured here,
    that tripled the step's time. The tuples hold no cycles, so pausing loses nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class _Parent:
    """A meter whose flow is the sum of its children's (a balanced network node)."""

    device: DeviceId
    kind: str
    row: int
    key: NDArray[np.uint64]
    losses: float
    # (kind, rows, factor): the children of one kind and what turns their own flow into
    # the network's quantity (a pump's m3/h into kW on an electricity network).
    children: tuple[tuple[str, NDArray[np.intp], float], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every meter's values at one step, per kind: (quantity, channel) -> array in file order.

    Electrical kinds carry the full three-phase picture a Modbus meter shows (voltages and
    currents of l1-l3, frequency, reactive power, both energy registers), more than their
    published ``MEASURES``."""

    time_ms: int
    values: dict[str, dict[Key, Floats]]


class EstateSimulator:
    """Produces the readings of every meter of ``spec`` at the times it is asked for."""

    def __init__(self, spec: EstateSpec, seed: int, faults: Iterable[Fault] | None = None,
                 ) -> None:
        self.spec = spec
        self.seed = seed
        self._tz = ZoneInfo(spec.timezone)
        self._latitude, self._longitude = timezone_position(spec.timezone)
        self._estate_key = np.array([identity_key(seed, spec.id)], dtype=np.uint64)
        fault_list = estate_faults(spec) if faults is None else list(faults)
        self.faults = FaultPlan(fault_list, outage_reach(spec, fault_list))
        facility_index = {f.id: k for k, f in enumerate(spec.facilities)}
        self._shift_start = np.array([f.shift_start for f in spec.facilities], dtype=float)
        self._shift_end = np.array([f.shift_end for f in spec.facilities], dtype=float)
        self._weekend = np.array([f.weekend for f in spec.facilities], dtype=bool)
        self._devices: list[DeviceId] = []
        self._where: dict[DeviceId, tuple[str, int]] = {}
        members: dict[str, list[tuple[DeviceId, float, float, float, int]]] = {}
        for device, meter, facility in spec.devices():
            rows = members.setdefault(meter.kind, [])
            self._where[device] = (meter.kind, len(rows))
            self._devices.append(device)
            rows.append((device, meter.nominal, meter.base_share, meter.capacity,
                         facility_index[facility.id]))
        self._groups: dict[str, MeterGroup] = {}
        for kind, rows in members.items():
            keys = np.array([identity_key(seed, d.estate, d.facility, d.device)
                             for d, *_ in rows], dtype=np.uint64)
            group = MeterGroup(kind, [r[0] for r in rows], keys,
                               np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                               np.array([r[3] for r in rows]),
                               np.array([r[4] for r in rows], dtype=np.intp))
            init_state(group)
            self._groups[kind] = group
        self._order = [(d, *self._where[d]) for d in self._devices]
        # (estate, facility, device, quantity, channel) of every reading, row by row.
        self._heads = {kind: [(d.estate, d.facility, d.device, q, c) for d in group.devices
                              for q, c in MEASURES[kind]]
                       for kind, group in self._groups.items()}
        self._parents = self._network_parents()
        self._last_ms: int | None = None
        self.snapshot: Snapshot | None = None

    def _network_parents(self) -> list[_Parent]:
        """The balanced nodes of the networks in the order their flows are computed:
        water and gas first (a pump's flow sets its power on the electricity network),
        each network bottom-up."""
        out: list[_Parent] = []
        trees = sorted(self.spec.network_trees(), key=lambda t: t.utility == "electricity")
        estate = self.spec.id
        for tree in trees:
            nodes = {b.meter: b for b in tree.balance_nodes()}
            for meter in tree.bottom_up():
                node = nodes.get(meter)
                if node is None:
                    continue
                kind, row = self._where[DeviceId(estate, *meter.split("/", 1))]
                by_kind: dict[str, list[int]] = {}
                for child in node.children:
                    child_kind, j = self._where[DeviceId(estate, *child.split("/", 1))]
                    by_kind.setdefault(child_kind, []).append(j)
                children = tuple(
                    (k, np.array(rows, dtype=np.intp),
                     PUMP_KWH_PER_M3 if (k == "pump" and tree.utility == "electricity")
                     else 1.0)
                    for k, rows in by_kind.items())
                key = self._groups[kind].keys[row:row + 1]
                out.append(_Parent(self._groups[kind].devices[row], kind, row, key,
                                   node.losses, children))
        return out

    @property
    def devices(self) -> list[DeviceId]:
        return list(self._devices)

    def locate(self, device: DeviceId) -> tuple[str, int]:
        """The kind of ``device`` and its row in that kind's arrays of a ``Snapshot``."""
        return self._where[device]

    def step(self, time_ms: int) -> list[tuple[DeviceId, list[Reading]]]:
        """The readings of every meter at ``time_ms``; counters advance since the last step.

        A meter that a fault holds offline is listed with no readings."""
        snapshot = self.advance(time_ms)
        with _collector_paused():
            return self._readings(snapshot)

    def _readings(self, snapshot: Snapshot) -> list[tuple[DeviceId, list[Reading]]]:
        time_ms = snapshot.time_ms
        per_kind: dict[str, list[Reading]] = {}
        for kind, values in snapshot.values.items():
            matrix = np.column_stack([values[key] for key in MEASURES[kind]])
            # Adding 0.0 turns -0.0 (PV at night) into 0.0.
            flat = (np.round(matrix, 6) + 0.0).ravel().tolist()
            # Built in C (map over prepared identity tuples): a comprehension calling
            # Reading() per reading took twice as long here.
            per_kind[kind] = list(map(_new_reading, repeat(Reading), map(
                add, self._heads[kind], zip(flat, repeat(time_ms)))))
        out: list[tuple[DeviceId, list[Reading]]] = []
        faulty = self.faults.devices
        for device, kind, j in self._order:
            width = len(MEASURES[kind])
            readings = per_kind[kind][j * width:(j + 1) * width]
            if device in faulty:
                readings = self.faults.apply(device, readings, time_ms)
            out.append((device, readings))
        return out

    def advance(self, time_ms: int) -> Snapshot:
        """Step every meter to ``time_ms`` and return the values, without building readings."""
        last = self._last_ms
        hours = (time_ms - last) / 3_600_000 if last is not None and time_ms > last else 0.0
        self._last_ms = time_ms
        for device in self.faults.resets(last, time_ms):
            kind, j = self._where[device]
            for name, array in self._groups[kind].state.items():
                if name in QUANTITIES and QUANTITIES[name].kind is Kind.COUNTER:
                    array[j] = 0.0
        local = datetime.fromtimestamp(time_ms / 1000, UTC).astimezone(self._tz)
        hour = local.hour + local.minute / 60 + local.second / 3600
        activity = self._activity(local.weekday(), hour)
        weather = self._weather(time_ms, local)
        clock = Clock(time_ms, hours, hour, local.weekday())
        shares = {kind: share_of(group, clock, activity[group.facility])
                  for kind, group in self._groups.items()}
        flows = {kind: own_flow(group, clock, weather, *shares[kind])
                 for kind, group in self._groups.items()}
        leaks: dict[DeviceId, float] = {}
        for device, extra in self.faults.leaks(time_ms):
            leaks[device] = leaks.get(device, 0.0) + extra
            kind, j = self._where[device]
            flow = flows[kind]
            if flow is not None and kind in _LEAKING_KINDS:
                flow[j] += extra
        dry: dict[str, list[int]] = {}
        for device in self.faults.cut(time_ms):
            kind, j = self._where[device]
            dry.setdefault(kind, []).append(j)
            flow = flows[kind]
            if flow is not None:
                flow[j] = 0.0
        for parent in self._parents:
            flow = flows[parent.kind]
            assert flow is not None  # a balanced node reports a flow (estate.networks)
            if parent.row in dry.get(parent.kind, ()):
                continue
            total = absolute = 0.0
            for kind, rows, factor in parent.children:
                child = flows[kind]
                assert child is not None
                total += float(child[rows].sum()) * factor
                absolute += float(np.abs(child[rows]).sum()) * factor
            noise = 1 + LOSS_NOISE * float(np.clip(normal(parent.key, time_ms, 40)[0], -3, 3))
            own_leak = leaks.get(parent.device, 0.0) if parent.kind in _LEAKING_KINDS else 0.0
            flow[parent.row] = total + parent.losses * absolute * noise + own_leak
        values = {kind: values_of(group, clock, weather, flows[kind], *shares[kind],
                                  np.array(dry.get(kind, []), dtype=np.intp))
                  for kind, group in self._groups.items()}
        self.snapshot = Snapshot(time_ms, values)
        return self.snapshot

    def _activity(self, weekday: int, hour: float) -> Floats:
        """Per facility: 0 outside working hours, 1 in them, ramps at shift change."""
        start, end = self._shift_start, self._shift_end
        rise = (hour - start) / SHIFT_RAMP_H
        fall = (end - hour) / SHIFT_RAMP_H
        wraps = end <= start
        within = np.where(wraps, np.maximum(rise, fall), np.minimum(rise, fall))
        activity = np.clip(within, 0.0, 1.0)
        activity[(start == 0) & (end == 24)] = 1.0
        if weekday >= 5:
            activity[~self._weekend] = 0.0
        return activity

    def _weather(self, time_ms: int, local: datetime) -> Weather:
        key = self._estate_key
        day = time_ms // 86_400_000
        season = math.cos(2 * math.pi * (local.timetuple().tm_yday - 15) / 365)
        if self._latitude < 0:
            season = -season
        hour = local.hour + local.minute / 60
        ambient = (17.0 - 8.0 * season + 5.0 * math.cos(2 * math.pi * (hour - 15) / 24)
                   + 2.0 * float(smooth(key, time_ms, 86_400_000, 1)[0])
                   + 1.5 * float(smooth(key, time_ms, 3 * 3_600_000, 2)[0]))
        # Most days are clear or nearly so; a few are overcast, and clouds pass within a day.
        overcast = float(uniform(key, day, 3)[0]) ** 3
        passing = float(smooth(key, time_ms, 20 * 60_000, 4)[0])
        cloud = min(1.0, max(0.0, overcast + 0.25 * overcast * passing
                             + 0.05 * max(0.0, passing)))
        return Weather(
            ambient_c=ambient,
            clear_sky=clear_sky(time_ms, self._latitude, self._longitude),
            cloud=cloud,
            voltage_drift=2.0 * float(smooth(key, time_ms, 10 * 60_000, 5)[0]),
            frequency=NOMINAL_FREQUENCY + 0.03 * float(smooth(key, time_ms, 60_000, 6)[0]))


