"""The estate per utility, as the overview shows it: which meters stand for each
facility's draw of electricity, water and gas, and which for the estate's import.

Worked out once from the estate description (``UtilityLayout.of``), then read against the
live values on every request:

- The estate's **import** of a utility is the flow at the roots of that utility's network
  trees (``estate.networks``: the grid incomer, the well's booster, the gas station), not
  whichever meter happens to be called ``main``. A utility without a network has none.
- A facility's **draw** is the flow through its own top meters of the utility: for
  electricity the meters marked ``incomer`` if it has any, else (and for water and gas)
  those of its meters reporting the utility's flow that no other of its meters feeds in
  the utility's network. A facility without such a meter is not listed for the utility.
- A facility's **state**, most pressing first: ``alarm`` (an active alarm on any of its
  meters or on the facility), ``offline`` (every device of it in the utility said so in
  its status, or its Last Will did), ``stale`` (no value of its draw newer than the stale
  time), ``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from dispatch.alarms.model import SEVERITY_RANK, facility_source
from dispatch.registry.alarm_counts import SourceAlarms
from estate.model import MEASURES, EstateSpec, FacilitySpec
from estate.networks import FLOW_KINDS, FLOW_QUANTITY, UTILITIES, UTILITY_KINDS, NetworkTree
from estate.units import QUANTITIES

LiveKey = tuple[str, str, str, str]
"""(facility, device, quantity, channel), as ``LiveState`` keys its values."""

OFFLINE: Final = "offline"
"""The status a device's Last Will (and its clean stop) reports."""

# The estate's contracted import per utility, in the utility's flow unit: the estate file
# knows only the grid connection's (kW).
_CONTRACTED_UTILITY: Final = "electricity"


@dataclass(frozen=True, slots=True)
class FacilityDraw:
    """What stands for a facility's draw of one utility."""

    id: str
    name: str
    meters: tuple[str, ...]
    devices: tuple[str, ...]  # every device of the facility in the utility


@dataclass(frozen=True, slots=True)
class UtilityLayout:
    """One utility: the meters of its import and each facility's draw."""

    utility: str
    quantity: str
    unit: str
    imports: tuple[tuple[str, str], ...]  # (facility, meter) of each network root
    facilities: tuple[FacilityDraw, ...]

    @classmethod
    def of(cls, spec: EstateSpec, utility: str) -> UtilityLayout | None:
        """The layout of ``utility`` in ``spec``; None if no facility draws it."""
        quantity = FLOW_QUANTITY[utility]
        trees = [t for t in spec.network_trees() if t.utility == utility]
        imports = tuple((root.partition("/")[0], root.partition("/")[2])
                        for root in (t.root for t in trees))
        draws = tuple(d for d in (_draw(f, utility, trees) for f in spec.facilities)
                      if d is not None)
        if not draws and not imports:
            return None
        return cls(utility, quantity, QUANTITIES[quantity].unit, imports, draws)

    def live_keys(self) -> list[LiveKey]:
        """Every live value the layout reads."""
        keys = [(f, m, self.quantity, "") for f, m in self.imports]
        keys += [(d.id, m, self.quantity, "") for d in self.facilities for m in d.meters]
        return keys


def _reports(kind: str, quantity: str) -> bool:
    return (quantity, "") in MEASURES[kind]


def _draw(facility: FacilitySpec, utility: str, trees: list[NetworkTree],
          ) -> FacilityDraw | None:
    quantity = FLOW_QUANTITY[utility]
    flowing = [m for m in facility.meters
               if m.kind in FLOW_KINDS[utility] and _reports(m.kind, quantity)]
    if utility == "electricity" and any(m.incomer for m in flowing):
        top = [m.id for m in flowing if m.incomer]
    else:
        own = {f"{facility.id}/{m.id}" for m in flowing}
        top = [m.id for m in flowing
               if not any(a in own for t in trees if f"{facility.id}/{m.id}" in t
                          for a in t.ancestors(f"{facility.id}/{m.id}"))]
    if not top:
        return None
    devices = tuple(m.id for m in facility.meters if m.kind in UTILITY_KINDS[utility])
    return FacilityDraw(facility.id, facility.name, tuple(top), devices)


def layouts(spec: EstateSpec) -> list[UtilityLayout]:
    """The estate's utilities, electricity, water, gas, those it has."""
    return [lay for u in UTILITIES if (lay := UtilityLayout.of(spec, u)) is not None]


@dataclass(frozen=True, slots=True)
class LiveView:
    """What one request reads, once: values, statuses, alarms, and the time."""

    values: Mapping[LiveKey, Any]  # each with .value and .time_ms (``LiveValue``)
    statuses: Mapping[tuple[str, str], str]
    alarms: Mapping[str, SourceAlarms]
    now_ms: int
    stale_after_ms: int


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds"
                                                            ).replace("+00:00", "Z")


def _sum(view: LiveView, keys: list[LiveKey]) -> tuple[float | None, int | None]:
    """The sum of the keys' values that have one, and the oldest of their times."""
    found = [view.values[k] for k in keys if k in view.values]
    if not found:
        return None, None
    return sum(v.value for v in found), min(v.time_ms for v in found)


def _worst(severities: list[str]) -> str:
    return min(severities, key=lambda s: SEVERITY_RANK.get(s, len(SEVERITY_RANK)))


class EstateOverview:
    """The overview's answer, from a layout worked out once per estate description."""

    def __init__(self, spec: EstateSpec) -> None:
        self.spec = spec
        self.layouts = layouts(spec)
        # Where an alarm of each facility may be raised: the facility and all its meters.
        self._sources = {f.id: [facility_source(f.id)] + [f"{f.id}/{m.id}" for m in f.meters]
                         for f in spec.facilities}
        self.keys = [k for lay in self.layouts for k in lay.live_keys()]

    def facility_alarms(self, view: LiveView, facility: str) -> tuple[int, str | None]:
        found = [a for s in self._sources.get(facility, ())
                 if (a := view.alarms.get(s)) is not None]
        if not found:
            return 0, None
        return sum(a.count for a in found), _worst([a.worst_severity for a in found])

    def _facility(self, lay: UtilityLayout, draw: FacilityDraw, view: LiveView,
                  alarms: tuple[int, str | None]) -> dict[str, Any]:
        value, at_ms = _sum(view, [(draw.id, m, lay.quantity, "") for m in draw.meters])
        count, worst = alarms
        if count:
            state = "alarm"
        elif draw.devices and all(view.statuses.get((draw.id, d)) == OFFLINE
                                  for d in draw.devices):
            state = "offline"
        elif at_ms is None or view.now_ms - at_ms > view.stale_after_ms:
            state = "stale"
        else:
            state = "ok"
        return {"id": draw.id, "name": draw.name, "tenant": draw.name, "state": state,
                "value": value, "unit": lay.unit, "at": _iso(at_ms),
                "active_alarms": count, "worst_severity": worst}

    def utilities(self, view: LiveView, scope: str | None) -> list[dict[str, Any]]:
        """Each utility with its import, its contracted limit and its facilities; for an
        account bound to a facility, that facility only and no estate figures."""
        alarms = {f.id: self.facility_alarms(view, f.id) for f in self.spec.facilities
                  if scope is None or f.id == scope}
        out = []
        for lay in self.layouts:
            estate_figures = scope is None
            imported = None
            if estate_figures and lay.imports:
                value, at_ms = _sum(view, [(f, m, lay.quantity, "") for f, m in lay.imports])
                if value is not None:
                    imported = {"value": value, "unit": lay.unit, "at": _iso(at_ms)}
            contracted = ({"value": self.spec.contracted_capacity_kw, "unit": "kW"}
                          if estate_figures and lay.utility == _CONTRACTED_UTILITY else None)
            out.append({"utility": lay.utility, "import": imported, "contracted": contracted,
                        "facilities": [self._facility(lay, d, view, alarms[d.id])
                                       for d in lay.facilities
                                       if scope is None or d.id == scope]})
        return out
