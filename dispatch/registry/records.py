"""What the registry hands out and takes in: frozen records, never its rows.

Rows (``dispatch.registry.models``) stay inside the registry's sessions; the rest of
dispatch sees these, so it needs no SQLAlchemy and its tests need no database session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from estate.commands import FINAL_STATES, CommandRequest, CommandState
from estate.topics import DeviceId

# --- the estate as planning needs it ---


@dataclass(frozen=True, slots=True)
class EstateRecord:
    id: str
    name: str
    timezone: str
    contracted_capacity_kw: float


@dataclass(frozen=True, slots=True)
class FacilityRecord:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """A flexible asset; ``facility_id`` None: shared, at the estate's grid connection;
    ``device_*``: the device its commands go to, if any."""

    id: str
    kind: str
    name: str
    params: Mapping[str, Any]
    facility_id: str | None
    control_mode: str
    device_facility_id: str | None
    device_id: str | None


@dataclass(frozen=True, slots=True)
class MeterRecord:
    facility_id: str
    id: str


@dataclass(frozen=True, slots=True)
class TariffPeriodRecord:
    """A price over local minutes ``[start_minute, end_minute)`` on the days of
    ``days_mask`` (bit 0 Monday)."""

    name: str
    energy_price: float
    start_minute: int
    end_minute: int
    days_mask: int


@dataclass(frozen=True, slots=True)
class TariffRecord:
    """One tariff version, valid over ``[valid_from, valid_to)``."""

    valid_from: date
    valid_to: date | None
    currency: str
    demand_charge_per_kw: float
    export_price: float
    export_limit_kw: float | None
    periods: tuple[TariffPeriodRecord, ...]


@dataclass(frozen=True, slots=True)
class CapacityLimitRecord:
    """An import limit: ``facility_id`` None for the estate, else a tenant's sub-limit."""

    facility_id: str | None
    limit_kw: float
    valid_from: date
    valid_to: date | None


@dataclass(frozen=True, slots=True)
class PlanningInputs:
    """Everything of an estate a plan is assembled from (retired rows left out)."""

    estate: EstateRecord
    facilities: tuple[FacilityRecord, ...]
    assets: tuple[AssetRecord, ...]
    incomers: tuple[MeterRecord, ...]
    tariffs: tuple[TariffRecord, ...]
    limits: tuple[CapacityLimitRecord, ...]


# --- plans ---


@dataclass(frozen=True, slots=True)
class PlanDraft:
    """A run's plan as the registry stores it; ``auto``: approved at once (every asset it
    commands is in auto control mode). ``summary`` gains its ``revision`` when saved."""

    estate_id: str
    horizon_start: datetime
    horizon_end: datetime
    step_minutes: int
    auto: bool
    solver_status: str
    mip_gap: float | None
    objective: float | None
    cost: float | None
    baseline_cost: float | None
    peak_kw: float | None
    baseline_peak_kw: float | None
    explanation: str
    setpoints: Mapping[str, Sequence[float]]
    summary: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A plan row after a run: ``written`` False when the run left a decided plan alone;
    ``commands``: the ids of the commands decided with it (its auto assets' setpoints)."""

    id: int
    status: str
    written: bool
    revision: int
    commands: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanSetpoints:
    """What a plan asks of its assets, per step."""

    id: int
    estate_id: str
    horizon_start: datetime
    step_minutes: int
    setpoints: Mapping[str, Sequence[float]]


@dataclass(frozen=True, slots=True)
class CommandableAsset:
    """An asset that takes commands: its kind, control mode and device."""

    id: str
    kind: str
    control_mode: str
    device: DeviceId


# --- commands ---


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command as the registry holds it."""

    id: str
    device: DeviceId
    action: str
    params: Mapping[str, Any]
    status: CommandState
    reason: str | None
    detail: str | None
    requested_by: str
    asset_id: str | None
    plan_id: int | None
    created_at: datetime
    deadline_at: datetime
    sent_at: datetime | None
    answered_at: datetime | None
    position: int = 0


    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


@dataclass(frozen=True, slots=True)
class StepCommands:
    """The commands a decision about a plan causes: for which step, in their order."""

    step: int
    commands: tuple[NewCommand, ...]


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """Who delivers the commands of a decision (a sender's identity) and for how long
    before another sender may take them over."""

    claimer: str
    ms: int


@dataclass(frozen=True, slots=True)
class NewCommand:
    """A command decided (by an approval, by a plan for its auto assets), to be written
    ``pending`` in the transaction of the decision: ``position`` orders the commands
    decided together, and they are delivered in it."""

    request: CommandRequest
    device: DeviceId
    asset_id: str | None = None
    plan_id: int | None = None
    position: int = 0


DecideCommands = Callable[[PlanSetpoints, Mapping[str, CommandableAsset], str], StepCommands]
"""What a plan's decision sends, from the plan, its commandable assets and its status
after the decision: run inside the decision's transaction, so the commands are written
with it or not at all."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit row."""

    at: datetime
    actor: str
    action: str
    detail: Mapping[str, Any]
