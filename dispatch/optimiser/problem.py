"""The optimiser's input: one frozen dataclass per asset kind and the estate around them.

Units everywhere: power in kW (electric unless the name says ``_th``), energy in kWh,
water in m³ and m³/h, prices in currency per kWh, the demand charge in currency per kW of
the billing period's peak, time in steps of ``step_hours``. Arrays are numpy ``float64``:
one value per step (``(steps,)``) or per facility and step (``(facilities, steps)``).

Assets belong to a facility (a tenant) by name; the facility's import limit applies to its
base load plus its assets. Step windows are half-open, ``[start, end)`` in step indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RUNNING_SHARE: Final = 0.01
"""A deferrable load with binaries draws at least this share of its ``max_kw`` while on,
when its own ``min_kw`` is lower. Why: "on" at zero power would let a non-interruptible
load stop in the middle of its one run (or a minimum run count idle steps); 1% of the
rating is as good as stopped for any real batch process, and small enough to cost
nothing measurable."""


@dataclass(frozen=True, slots=True, eq=False)
class Battery:
    """An electrical battery. ``soc_terminal_kwh`` None means "end where it started"."""

    name: str
    facility: str
    soc_min_kwh: float
    soc_max_kwh: float
    soc_initial_kwh: float
    charge_kw: float
    discharge_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_terminal_kwh: float | None = None
    degradation_cost: float = 0.0
    """Currency per kWh of throughput: energy charged plus energy discharged (AC side)."""

    @property
    def terminal_kwh(self) -> float:
        return self.soc_initial_kwh if self.soc_terminal_kwh is None else self.soc_terminal_kwh


@dataclass(frozen=True, slots=True, eq=False)
class DeferrableLoad:
    """A load that needs ``energy_kwh`` (at least) within ``[window_start, window_end)``.

    It needs binaries (on/off per step) when it has a minimum power, a minimum run time
    above one step, or must run without interruption (one contiguous run).
    """

    name: str
    facility: str
    energy_kwh: float
    max_kw: float
    window_start: int
    window_end: int
    min_kw: float = 0.0
    min_run_steps: int = 1
    non_interruptible: bool = False

    @property
    def needs_binaries(self) -> bool:
        return self.min_kw > 0 or self.min_run_steps > 1 or self.non_interruptible

    @property
    def floor_kw(self) -> float:
        """The least it draws while on (loads with binaries): ``min_kw``, or a sliver of
        ``max_kw`` (``RUNNING_SHARE``) when that is zero, so "on" always means running."""
        return max(self.min_kw, RUNNING_SHARE * self.max_kw)


@dataclass(frozen=True, slots=True, eq=False)
class Genset:
    """A genset or CHP unit (electric output only), dispatched on/off with binaries.

    ``initial_steps`` is how long it has been in its initial state (on or off) before the
    horizon; the default (a day of 15-minute steps) frees it from its minimum up/down time.
    """

    name: str
    facility: str
    min_kw: float
    max_kw: float
    fuel_cost: float
    """Currency per kWh of electric output."""
    start_cost: float = 0.0
    min_up_steps: int = 1
    min_down_steps: int = 1
    initially_on: bool = False
    initial_steps: int = 96


@dataclass(frozen=True, slots=True, eq=False)
class ThermalStorage:
    """A chiller with a chilled-water tank (storage in kWh of cooling).

    Each step the tank gains the chiller's cooling output and loses the cooling demand
    (and ``loss_per_hour`` of its content); the chiller draws ``cooling / cop`` kW.
    """

    name: str
    facility: str
    chiller_max_kw_th: float
    cop: float | FloatArray
    cooling_demand_kw_th: FloatArray
    tank_min_kwh: float
    tank_max_kwh: float
    tank_initial_kwh: float
    tank_terminal_kwh: float | None = None
    loss_per_hour: float = 0.0

    @property
    def terminal_kwh(self) -> float:
        return self.tank_initial_kwh if self.tank_terminal_kwh is None else self.tank_terminal_kwh


@dataclass(frozen=True, slots=True, eq=False)
class PumpTank:
    """A variable-speed pump filling a water tank that serves a water demand.

    The tank's maximum is its top: water never stands above it. ``overflow`` says the
    tank has an overflow (the estate file's word): water pumped in while it is full runs
    away, at ``spill_cost`` per m³; without one the pump simply cannot fill it further.
    """

    name: str
    facility: str
    pump_max_kw: float
    flow_per_kw: float
    """m³/h pumped per kW drawn."""
    water_demand_m3h: FloatArray
    tank_min_m3: float
    tank_max_m3: float
    tank_initial_m3: float
    tank_terminal_m3: float | None = None
    overflow: bool = False
    spill_cost: float = 0.0
    """Currency per m³ of water that runs over the top (water bought, treated, lost)."""

    @property
    def terminal_m3(self) -> float:
        return self.tank_initial_m3 if self.tank_terminal_m3 is None else self.tank_terminal_m3


@dataclass(frozen=True, slots=True, eq=False)
class PV:
    """A PV plant: it produces up to its forecast and may be curtailed."""

    name: str
    facility: str
    forecast_kw: FloatArray


@dataclass(frozen=True, slots=True)
class DemandResponseWindow:
    """The grid operator's order: estate import at most ``cap_kw`` in ``[start, end)``."""

    start: int
    end: int
    cap_kw: float
    name: str = "demand response"


@dataclass(frozen=True, slots=True, eq=False)
class EstateProblem:
    """One optimisation: the estate, its tariff for the horizon, and its flexible assets.

    ``import_price`` and ``export_price`` are per step (see ``dispatch.optimiser.tariffs``
    for turning tariff versions into them). ``prior_peak_kw`` is the billing period's peak
    so far: the demand charge applies only to import above it. ``facility_limit_kw`` None
    means no tenant sub-limits (``inf`` entries mean none for that facility and step).
    """

    start: datetime
    step_hours: float
    facilities: tuple[str, ...]
    base_load_kw: FloatArray
    import_price: FloatArray
    export_price: FloatArray
    capacity_kw: float
    export_limit_kw: float | FloatArray = float("inf")
    demand_charge: float = 0.0
    prior_peak_kw: float = 0.0
    facility_limit_kw: FloatArray | None = None
    dr_windows: tuple[DemandResponseWindow, ...] = ()
    batteries: tuple[Battery, ...] = ()
    deferrables: tuple[DeferrableLoad, ...] = ()
    gensets: tuple[Genset, ...] = ()
    thermal: tuple[ThermalStorage, ...] = ()
    pumps: tuple[PumpTank, ...] = ()
    pv: tuple[PV, ...] = ()
    violation_penalty: float | None = None
    """Currency per kW·h (kWh, m³) of a broken limit; None: derived from the prices so
    it outweighs every one of them (``dispatch.optimiser.penalty``)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Optional display names (facility or asset name -> words an operator knows)."""

    @property
    def steps(self) -> int:
        return int(np.shape(self.base_load_kw)[-1])

    def time_of(self, step: int) -> datetime:
        """The start of ``step`` (``step == steps`` is the end of the horizon).

        Steps are elapsed time: across a daylight-saving change the wall clock jumps.
        """
        offset = timedelta(hours=self.step_hours * step)
        if self.start.tzinfo is None:
            return self.start + offset
        return (self.start.astimezone(UTC) + offset).astimezone(self.start.tzinfo)

    def export_limit(self) -> FloatArray:
        return np.broadcast_to(np.asarray(self.export_limit_kw, dtype=np.float64),
                               (self.steps,)).astype(np.float64)

    def facility_limits(self) -> FloatArray:
        if self.facility_limit_kw is None:
            return np.full((len(self.facilities), self.steps), np.inf)
        return np.asarray(self.facility_limit_kw, dtype=np.float64)

    def label(self, name: str) -> str:
        return self.labels.get(name, name)


Asset = Battery | DeferrableLoad | Genset | ThermalStorage | PumpTank | PV
