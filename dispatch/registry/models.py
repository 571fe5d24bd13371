"""The registry's tables (SQLAlchemy 2 ORM), portable across SQLite and PostgreSQL.

Identifiers of the estate description (estate, facility, meter, asset ids) are the keys of
their rows, so the YAML loads with plain upserts and a command or plan names what an
operator sees. Rows that the system creates (plans, tariff versions, limits, audit entries)
get integer keys; commands get a UUID because the sender makes it before any row exists.

Every timestamp is timezone-aware in Python and stored as UTC (``UtcDateTime``); JSON
columns use the portable ``JSON`` type. Constraint names follow ``NAMING_CONVENTION`` so
Alembic can alter them later, SQLite included.

Tables to come (crews, shifts, alarms, incidents, work orders, demand-response events,
webhook subscriptions and their outbox, users, roles) take the same shape: a plural table
name, ``estate_id`` first where they belong to an estate, ``*_at`` for timestamps.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# Base and UtcDateTime are also the models' (the migrations and the schema tests take them
# from here, with every table registered on Base.metadata).
from dispatch.registry.base import Base as Base
from dispatch.registry.base import UtcDateTime as UtcDateTime
from dispatch.registry.base import one_of, utc_now

ASSET_CONTROL_MODES: Final = ("manual", "auto")
PLAN_STATUSES: Final = ("draft", "approved", "rejected", "superseded", "executed")
SCHEDULER_JOBS_TABLE: Final = "scheduler_jobs"


# --- the estate description (loaded from YAML by ``dispatch.registry.loader``) ---

class EstateRow(Base):
    __tablename__ = "estates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    contracted_capacity_kw: Mapped[float] = mapped_column(Float)

    facilities: Mapped[list[FacilityRow]] = relationship(
        back_populates="estate", cascade="all, delete-orphan", passive_deletes=True)


class FacilityRow(Base):
    """A tenant. ``retired_at``: removed from the estate file, kept for history."""

    __tablename__ = "facilities"

    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(200), default="")
    retired_at: Mapped[datetime | None]

    estate: Mapped[EstateRow] = relationship(back_populates="facilities")


class MeterRow(Base):
    __tablename__ = "meters"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "facility_id"],
                             ["facilities.estate_id", "facilities.id"], ondelete="CASCADE"),
    )

    estate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    facility_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    incomer: Mapped[bool] = mapped_column(default=False)
    retired_at: Mapped[datetime | None]


class AssetRow(Base):
    """A flexible asset the optimiser dispatches.

    ``facility_id`` None: a shared estate asset (at the estate's grid connection).
    ``params`` holds the kind's parameters as validated by ``estate.assets`` (units in the
    key names). ``device_facility_id``/``device_id`` is the device commands go through.
    """

    __tablename__ = "assets"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "facility_id"],
                             ["facilities.estate_id", "facilities.id"], ondelete="CASCADE"),
        one_of("control_mode", ASSET_CONTROL_MODES, "control_mode"),
    )

    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    facility_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    params: Mapped[dict[str, Any]]
    control_mode: Mapped[str] = mapped_column(String(16), default="manual")
    device_facility_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64))
    retired_at: Mapped[datetime | None]


class TariffRow(Base):
    """One version of a named tariff, valid over ``[valid_from, valid_to)`` (local dates)."""

    __tablename__ = "tariffs"
    __table_args__ = (UniqueConstraint("estate_id", "name", "valid_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    valid_from: Mapped[date]
    valid_to: Mapped[date | None]
    currency: Mapped[str] = mapped_column(String(3))
    demand_charge_per_kw: Mapped[float] = mapped_column(Float, default=0.0)
    export_price: Mapped[float] = mapped_column(Float, default=0.0)
    export_limit_kw: Mapped[float | None] = mapped_column(Float)

    periods: Mapped[list[TariffPeriodRow]] = relationship(
        back_populates="tariff", cascade="all, delete-orphan", passive_deletes=True,
        order_by="TariffPeriodRow.position")


class TariffPeriodRow(Base):
    """A price by local wall-clock minutes ``[start_minute, end_minute)`` on some weekdays.

    ``days_mask`` bit 0 is Monday; an end at or before the start wraps past midnight.
    ``position`` orders the periods of a version (the first that matches wins).
    """

    __tablename__ = "tariff_periods"
    __table_args__ = (
        UniqueConstraint("tariff_id", "position"),
        CheckConstraint("start_minute >= 0 AND start_minute < 1440", name="start_minute"),
        CheckConstraint("end_minute > 0 AND end_minute <= 1440", name="end_minute"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id", ondelete="CASCADE"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(32))
    days_mask: Mapped[int] = mapped_column(Integer, default=0b1111111)
    start_minute: Mapped[int]
    end_minute: Mapped[int]
    energy_price: Mapped[float] = mapped_column(Float)

    tariff: Mapped[TariffRow] = relationship(back_populates="periods")


class CapacityLimitRow(Base):
    """An import limit: ``facility_id`` None for the whole estate, else a tenant sub-limit."""

    __tablename__ = "capacity_limits"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "facility_id"],
                             ["facilities.estate_id", "facilities.id"], ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    facility_id: Mapped[str | None] = mapped_column(String(64))
    limit_kw: Mapped[float] = mapped_column(Float)
    valid_from: Mapped[date]
    valid_to: Mapped[date | None]
    penalty_per_kw: Mapped[float] = mapped_column(Float, default=0.0)


# --- what dispatch produces ---

class PlanRow(Base):
    """An optimised schedule for a horizon and what became of it.

    ``setpoints`` maps each asset id to one value per step (kW, or the kind's unit);
    ``summary`` holds the figures the web view shows. ``trigger`` is ``schedule`` or
    ``event:<what>``.
    """

    __tablename__ = "plans"
    __table_args__ = (
        one_of("status", PLAN_STATUSES, "status"),
        Index(None, "estate_id", "horizon_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    horizon_start: Mapped[datetime]
    horizon_end: Mapped[datetime]
    step_minutes: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    trigger: Mapped[str] = mapped_column(String(100), default="schedule")
    solver_status: Mapped[str] = mapped_column(String(32), default="")
    mip_gap: Mapped[float | None] = mapped_column(Float)
    objective: Mapped[float | None] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    baseline_cost: Mapped[float | None] = mapped_column(Float)
    peak_kw: Mapped[float | None] = mapped_column(Float)
    baseline_peak_kw: Mapped[float | None] = mapped_column(Float)
    explanation: Mapped[str] = mapped_column(Text, default="")
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None]
    setpoints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CommandRow(Base):
    """A remote command to a device (MQTT request/response) and its outcome."""

    __tablename__ = "commands"
    __table_args__ = (Index(None, "estate_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    estate_id: Mapped[str] = mapped_column(String(64))
    facility_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    asset_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="SET NULL"),
                                                index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    deadline_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    # Commands decided together (an approval, a plan's automatic setpoints) are delivered
    # in this order: a genset is started before it is given a setpoint.
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The sender delivering a pending command, until when: another sender takes it over
    # after that (its deliverer crashed), so a decided command is delivered after any crash.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]


class AuditRow(Base):
    """Who did what to which subject, and when: one row per action, never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- the scheduler ---

class LeaseRow(Base):
    """The single-active-scheduler lock (``dispatch.registry.lock``): one row per lease."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]
    # The fencing token: one more on every takeover, so a holder deposed while it worked
    # can tell (``dispatch.registry.lock.check_fence``).
    token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# APScheduler's own job table (``dispatch.scheduler.sql_jobstore``), declared here with the
# columns its SQLAlchemyJobStore (3.x) creates, so Alembic owns the schema like any other.
scheduler_jobs = Table(
    SCHEDULER_JOBS_TABLE, Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


# The control room's, demand response's and the web view's accounts' tables live in modules
# of their own; importing them here puts them in ``Base.metadata`` wherever the models are
# used (Alembic, the schema tests).
from dispatch.registry import accounts as _accounts  # noqa: E402, F401
from dispatch.registry import control_room as _control_room  # noqa: E402, F401
from dispatch.registry import demand_response as _demand_response  # noqa: E402, F401
from dispatch.registry import webhook_tables as _webhook_tables  # noqa: E402, F401
