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

from datetime import UTC, date, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ASSET_CONTROL_MODES: Final = ("manual", "auto")
PLAN_STATUSES: Final = ("draft", "approved", "rejected", "superseded", "executed")
SCHEDULER_JOBS_TABLE: Final = "scheduler_jobs"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC; naive datetimes are refused.

    PostgreSQL keeps it as ``timestamptz``. SQLite has no time zones: the value is stored
    as naive UTC text (which sorts and compares in time order) and comes back marked UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the registry; "
                             "registry times are timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect
                             ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        date: Date(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def utc_now() -> datetime:
    return datetime.now(UTC)


def _one_of(column: str, allowed: tuple[str, ...], name: str) -> CheckConstraint:
    values = ", ".join(f"'{v}'" for v in allowed)
    return CheckConstraint(f"{column} IN ({values})", name=name)


# --- the estate description (loaded from YAML by ``dispatch.registry.loader``) ---

class Estate(Base):
    __tablename__ = "estates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    contracted_capacity_kw: Mapped[float] = mapped_column(Float)

    facilities: Mapped[list[Facility]] = relationship(
        back_populates="estate", cascade="all, delete-orphan", passive_deletes=True)


class Facility(Base):
    """A tenant. ``retired_at``: removed from the estate file, kept for history."""

    __tablename__ = "facilities"

    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(200), default="")
    retired_at: Mapped[datetime | None]

    estate: Mapped[Estate] = relationship(back_populates="facilities")


class Meter(Base):
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


class Asset(Base):
    """A flexible asset the optimiser dispatches.

    ``facility_id`` None: a shared estate asset (at the estate's grid connection).
    ``params`` holds the kind's parameters as validated by ``estate.assets`` (units in the
    key names). ``device_facility_id``/``device_id`` is the device commands go through.
    """

    __tablename__ = "assets"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "facility_id"],
                             ["facilities.estate_id", "facilities.id"], ondelete="CASCADE"),
        _one_of("control_mode", ASSET_CONTROL_MODES, "control_mode"),
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


class Tariff(Base):
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

    periods: Mapped[list[TariffPeriod]] = relationship(
        back_populates="tariff", cascade="all, delete-orphan", passive_deletes=True,
        order_by="TariffPeriod.position")


class TariffPeriod(Base):
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

    tariff: Mapped[Tariff] = relationship(back_populates="periods")


class CapacityLimit(Base):
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

class Plan(Base):
    """An optimised schedule for a horizon and what became of it.

    ``setpoints`` maps each asset id to one value per step (kW, or the kind's unit);
    ``summary`` holds the figures the web view shows. ``trigger`` is ``schedule`` or
    ``event:<what>``.
    """

    __tablename__ = "plans"
    __table_args__ = (
        _one_of("status", PLAN_STATUSES, "status"),
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


class Command(Base):
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


class AuditEntry(Base):
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

class SchedulerLease(Base):
    """The single-active-scheduler lock (``dispatch.registry.lock``): one row per lease."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


# APScheduler's own job table (``dispatch.registry.jobstore``), declared here with the
# columns its SQLAlchemyJobStore (3.x) creates, so Alembic owns the schema like any other.
scheduler_jobs = Table(
    SCHEDULER_JOBS_TABLE, Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


# The control room's tables live in a module of their own; importing them here puts them
# in ``Base.metadata`` wherever the models are used (Alembic, the schema tests).
from dispatch.registry import control_room as _control_room  # noqa: E402, F401
