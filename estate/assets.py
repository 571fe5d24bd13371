"""Flexible assets, tariffs and capacity limits of an estate description.

These are the static facts the optimiser needs (``dispatch.optimiser.problem``), with the
same names and units: power in kW (``_kw_th`` for cooling), energy in kWh, water in m³,
prices in the tariff's currency per kWh, the demand charge per kW of the billing period's
peak. Durations are minutes of wall time (the optimiser turns them into steps of the plan's
length) and times of day are local ``HH:MM`` in the estate's time zone.

What changes from one plan to the next is not here: a battery's or tank's level comes from
telemetry, demand and PV output from forecasts, a deferrable load's window is placed on the
horizon from the local times given here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from estate.errors import TopicError
from estate.topics import validate_identifier as _validate

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY: Final = 1440
ControlMode = Literal["manual", "auto"]


def _identifier(value: str, what: str) -> str:
    try:
        return _validate(value, what)
    except TopicError as exc:
        raise ValueError(exc.detail) from exc


def parse_clock(value: str, *, end: bool = False) -> int:
    """``"HH:MM"`` local time to minutes after midnight; ``"24:00"`` only as an end."""
    hours, sep, minutes = value.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"time of day {value!r} is not HH:MM")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > MINUTES_PER_DAY or (total == MINUTES_PER_DAY and not end):
        raise ValueError(f"time of day {value!r} is out of range")
    return total


def days_mask(days: Iterable[Weekday]) -> int:
    """Weekdays as a bit mask, bit 0 for Monday (as the registry stores them)."""
    return sum(1 << WEEKDAYS.index(day) for day in set(days))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Clock = Annotated[str, Field(pattern=r"^\d{1,2}:\d{2}$")]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Efficiency = Annotated[float, Field(gt=0, le=1)]


# --- assets ---

class _AssetBase(_Strict):
    id: str
    name: str = ""
    # None: a shared estate asset at the grid connection, not behind a tenant's incomer.
    facility: str | None = None
    # The device its commands go to, as "facility/device"; None: not remotely controlled.
    device: str | None = None
    # manual: plans need an operator's approval; auto: approved plans are sent at once.
    control_mode: ControlMode = "manual"

    @field_validator("id")
    @classmethod
    def _asset_id(cls, value: str) -> str:
        return _identifier(value, "asset id")

    @field_validator("facility")
    @classmethod
    def _facility_id(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value, "facility id")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is None:
            return None
        facility, sep, device = value.partition("/")
        if not sep:
            raise ValueError(f"device {value!r} must be written facility/device")
        return f"{_identifier(facility, 'facility id')}/{_identifier(device, 'device id')}"

    @property
    def device_facility(self) -> str | None:
        return None if self.device is None else self.device.partition("/")[0]

    @property
    def device_id(self) -> str | None:
        return None if self.device is None else self.device.partition("/")[2]

    def params(self) -> dict[str, object]:
        """The kind's own parameters (what the registry keeps in ``assets.params``)."""
        common = set(_AssetBase.model_fields) | {"kind"}
        return self.model_dump(mode="json", exclude=common)


class BatterySpec(_AssetBase):
    kind: Literal["battery"]
    soc_min_kwh: NonNegative
    soc_max_kwh: Positive
    charge_kw: Positive
    discharge_kw: Positive
    charge_efficiency: Efficiency = 0.95
    discharge_efficiency: Efficiency = 0.95
    # Currency per kWh of throughput (charged plus discharged): wear, not energy.
    degradation_cost: NonNegative = 0.0

    @model_validator(mode="after")
    def _soc_range(self) -> BatterySpec:
        if self.soc_min_kwh >= self.soc_max_kwh:
            raise ValueError(f"battery {self.id!r}: soc_min_kwh must be below soc_max_kwh")
        return self


class GensetSpec(_AssetBase):
    kind: Literal["genset"]
    min_kw: NonNegative
    max_kw: Positive
    # Currency per kWh of electric output (fuel at the unit's efficiency).
    fuel_cost: NonNegative
    start_cost: NonNegative = 0.0
    min_up_minutes: Annotated[int, Field(ge=0)] = 0
    min_down_minutes: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _power_range(self) -> GensetSpec:
        if self.min_kw > self.max_kw:
            raise ValueError(f"genset {self.id!r}: min_kw must not exceed max_kw")
        return self


class DeferrableLoadSpec(_AssetBase):
    """A batch that needs ``energy_kwh`` between ``window_start`` and ``window_end`` each
    day it runs (an end at or before the start is on the next day)."""

    kind: Literal["deferrable_load"]
    energy_kwh: Positive
    max_kw: Positive
    min_kw: NonNegative = 0.0
    min_run_minutes: Annotated[int, Field(ge=0)] = 0
    non_interruptible: bool = False
    window_start: Clock
    window_end: Clock
    days: tuple[Weekday, ...] = WEEKDAYS

    @model_validator(mode="after")
    def _feasible(self) -> DeferrableLoadSpec:
        start = parse_clock(self.window_start)
        end = parse_clock(self.window_end, end=True)
        window = (end - start) % MINUTES_PER_DAY or MINUTES_PER_DAY
        if self.min_kw > self.max_kw:
            raise ValueError(f"deferrable load {self.id!r}: min_kw must not exceed max_kw")
        if self.energy_kwh > self.max_kw * window / 60:
            raise ValueError(f"deferrable load {self.id!r}: {self.energy_kwh} kWh cannot be "
                             f"drawn at {self.max_kw} kW within {window} minutes")
        if not self.days:
            raise ValueError(f"deferrable load {self.id!r}: days is empty")
        return self


class ThermalStorageSpec(_AssetBase):
    """A chiller with a chilled-water tank (cooling stored in kWh)."""

    kind: Literal["thermal_storage"]
    chiller_max_kw_th: Positive
    # Coefficient of performance: kW of cooling per kW of electricity.
    cop: Positive
    tank_min_kwh: NonNegative
    tank_max_kwh: Positive
    # Share of the tank's content lost per hour.
    loss_per_hour: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # The meter reporting the tank's fill (state_of_charge, % full), as facility/meter.
    level_meter: str | None = None

    @model_validator(mode="after")
    def _tank_range(self) -> ThermalStorageSpec:
        if self.tank_min_kwh >= self.tank_max_kwh:
            raise ValueError(f"thermal storage {self.id!r}: tank_min_kwh must be below "
                             "tank_max_kwh")
        return self


class PumpTankSpec(_AssetBase):
    """A variable-speed pump filling a water tank."""

    kind: Literal["pump_tank"]
    pump_max_kw: Positive
    # m³/h pumped per kW drawn.
    flow_per_kw: Positive
    tank_min_m3: NonNegative
    tank_max_m3: Positive
    # The tank has an overflow: water pumped into it when full runs away (at spill_cost
    # per m³, the water lost). Without one, a full tank cannot be filled further.
    overflow: bool = False
    spill_cost: NonNegative = 0.0
    # The meter reporting the tank's fill (state_of_charge, % full), as facility/meter.
    level_meter: str | None = None

    @model_validator(mode="after")
    def _tank_range(self) -> PumpTankSpec:
        if self.tank_min_m3 >= self.tank_max_m3:
            raise ValueError(f"pump {self.id!r}: tank_min_m3 must be below tank_max_m3")
        return self


class PVSpec(_AssetBase):
    """A PV plant; its output per step comes from a forecast scaled to ``peak_kw``."""

    kind: Literal["pv"]
    peak_kw: Positive


AssetSpec = Annotated[
    BatterySpec | GensetSpec | DeferrableLoadSpec | ThermalStorageSpec | PumpTankSpec | PVSpec,
    Field(discriminator="kind"),
]


# --- tariffs and limits ---

class TariffPeriodSpec(_Strict):
    """A price by local time of day, ``[start, end)``; an end at or before the start wraps
    past midnight, ``"24:00"`` is the end of the day."""

    name: str
    price: NonNegative
    start: Clock
    end: Clock
    days: tuple[Weekday, ...] = WEEKDAYS

    @property
    def start_minute(self) -> int:
        return parse_clock(self.start)

    @property
    def end_minute(self) -> int:
        return parse_clock(self.end, end=True)

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        parse_clock(value, end=True)
        return value

    def minutes(self) -> list[tuple[int, int]]:
        """The period as one or two ``[start, end)`` minute ranges within a day."""
        start, end = self.start_minute, self.end_minute
        if start < end:
            return [(start, end)]
        return [(start, MINUTES_PER_DAY), (0, end)] if end else [(start, MINUTES_PER_DAY)]


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def check_day_coverage(periods: Sequence[TariffPeriodSpec]) -> None:
    """Every minute of every weekday has exactly one period; raise ``ValueError`` if not.

    A wrapped period's early-morning part counts on the same weekday as its evening part,
    as the optimiser's tariff resolution reads it (by the local weekday and hour).
    """
    for index, day in enumerate(WEEKDAYS):
        owner: list[str | None] = [None] * MINUTES_PER_DAY
        for period in periods:
            if day not in period.days:
                continue
            for start, end in period.minutes():
                for minute in range(start, end):
                    other = owner[minute]
                    if other is not None:
                        raise ValueError(f"periods {other!r} and {period.name!r} overlap on "
                                         f"{day} at {_clock(minute)}")
                    owner[minute] = period.name
        if None in owner:
            minute = owner.index(None)
            raise ValueError(f"no period covers {WEEKDAYS[index]} at {_clock(minute)}")


class TariffSpec(_Strict):
    """One version of a tariff, valid over ``[valid_from, valid_to)`` (local dates)."""

    name: str
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    valid_from: date
    valid_to: date | None = None
    # Currency per kW of the billing period's highest import.
    demand_charge_per_kw: NonNegative = 0.0
    # Paid per kWh exported (0 where export earns nothing).
    export_price: NonNegative = 0.0
    export_limit_kw: NonNegative | None = None
    periods: tuple[TariffPeriodSpec, ...]

    @model_validator(mode="after")
    def _consistent(self) -> TariffSpec:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(f"tariff {self.name!r}: valid_to must be after valid_from")
        try:
            check_day_coverage(self.periods)
        except ValueError as exc:
            raise ValueError(f"tariff {self.name!r} from {self.valid_from}: {exc}") from exc
        return self


class CapacityLimitSpec(_Strict):
    """An import limit: the whole estate (``facility`` None) or one tenant's sub-limit."""

    facility: str | None = None
    limit_kw: Positive
    valid_from: date
    valid_to: date | None = None
    # Currency per kW above the limit (the billing period's highest excess).
    penalty_per_kw: NonNegative = 0.0

    @model_validator(mode="after")
    def _dates(self) -> CapacityLimitSpec:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("capacity limit: valid_to must be after valid_from")
        return self


def _overlap(a_from: date, a_to: date | None, b_from: date, b_to: date | None) -> bool:
    return a_from < (b_to or date.max) and b_from < (a_to or date.max)


def check_references(facilities: Iterable[str], assets: Sequence[AssetSpec],
                     tariffs: Sequence[TariffSpec],
                     limits: Sequence[CapacityLimitSpec]) -> None:
    """Cross-checks an estate needs: raise ``ValueError`` naming the first problem."""
    known = set(facilities)
    seen: set[str] = set()
    for asset in assets:
        if asset.id in seen:
            raise ValueError(f"asset {asset.id!r} appears twice")
        seen.add(asset.id)
        if asset.facility is not None and asset.facility not in known:
            raise ValueError(f"asset {asset.id!r}: no facility {asset.facility!r}")
        if asset.device_facility is not None and asset.device_facility not in known:
            raise ValueError(f"asset {asset.id!r}: device {asset.device!r} names no known "
                             "facility")
    for i, a in enumerate(tariffs):
        for b in tariffs[i + 1:]:
            if a.name == b.name and _overlap(a.valid_from, a.valid_to, b.valid_from, b.valid_to):
                raise ValueError(f"tariff {a.name!r}: versions from {a.valid_from} and "
                                 f"{b.valid_from} overlap")
    for i, limit in enumerate(limits):
        if limit.facility is not None and limit.facility not in known:
            raise ValueError(f"capacity limit: no facility {limit.facility!r}")
        for other in limits[i + 1:]:
            if other.facility == limit.facility and _overlap(
                    limit.valid_from, limit.valid_to, other.valid_from, other.valid_to):
                where = limit.facility or "the estate"
                raise ValueError(f"capacity limits of {where} from {limit.valid_from} and "
                                 f"{other.valid_from} overlap")
