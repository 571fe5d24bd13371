"""The control room's tables: networks, alarms, incidents, crews, the shift log, and the
outbox of events others need to hear about.

"One at a time" rules are unique constraints that hold on SQLite and PostgreSQL alike: a
row that must be unique only while it is live has a ``*_slot`` column that is 1 while it
is live and NULL after (both databases let NULL repeat in a unique constraint). So there
is one active alarm per estate, source and rule (``alarms.active_slot``), one open
incident per origin (``incidents.open_slot``), one current assignment per incident
(``assignments.current_slot``) and one handover waiting per estate
(``handovers.pending_slot``). The functions that change these rows
(``dispatch.registry.alarm_board``, ``incident_desk``, ``shift_log``) insert with ``ON
CONFLICT DO NOTHING`` against those constraints, and write each change's event into
``outbox_events`` in the same transaction; an event's ``dedupe_key`` is unique, so a change
applied twice (a worker killed after its commit and started again) adds no second event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.registry.base import Base, one_of, utc_now

UTILITIES: Final = ("electricity", "water", "gas")
SEVERITIES: Final = ("critical", "high", "medium", "low")
ALARM_STATES: Final = ("raised", "acknowledged", "shelved", "cleared")
INCIDENT_STATUSES: Final = ("open", "assigned", "on_site", "closed")
ENTRY_KINDS: Final = ("event", "action", "open_item")


# --- networks (loaded from the estate description) ---

class Network(Base):
    """A utility's network of meters (``estate.networks``)."""

    __tablename__ = "networks"
    __table_args__ = (one_of("utility", UTILITIES, "utility"),)

    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    utility: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    tolerance: Mapped[float] = mapped_column(Float)
    tolerance_abs: Mapped[float] = mapped_column(Float)


class NetworkNode(Base):
    """A meter of a network and the meter that feeds it (none: the root). ``losses``,
    the tolerances and ``balance`` are the node's own as a parent."""

    __tablename__ = "network_nodes"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "network_id"], ["networks.estate_id", "networks.id"],
                             ondelete="CASCADE"),
        ForeignKeyConstraint(["estate_id", "facility_id", "meter_id"],
                             ["meters.estate_id", "meters.facility_id", "meters.id"],
                             ondelete="CASCADE"),
    )

    estate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    network_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    facility_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_facility_id: Mapped[str | None] = mapped_column(String(64))
    parent_meter_id: Mapped[str | None] = mapped_column(String(64))
    losses: Mapped[float] = mapped_column(Float, default=0.0)
    tolerance: Mapped[float | None] = mapped_column(Float)
    tolerance_abs: Mapped[float | None] = mapped_column(Float)
    balance: Mapped[bool] = mapped_column(Boolean, default=True)


# --- alarms ---

class AlarmRow(Base):
    """An alarm of a source and rule, from raised to cleared (``dispatch.alarms.lifecycle``).

    ``source``: ``facility/meter``, ``facility:<id>`` or ``estate``. ``active_slot`` is 1
    while the alarm is active, NULL once cleared."""

    __tablename__ = "alarms"
    __table_args__ = (
        UniqueConstraint("estate_id", "source", "rule_id", "active_slot"),
        one_of("state", ALARM_STATES, "state"),
        one_of("severity", SEVERITIES, "severity"),
        Index(None, "estate_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(200))
    rule_id: Mapped[str] = mapped_column(String(64))
    rule_kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    active_slot: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(300))
    raised_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    shelved_at: Mapped[datetime | None]
    shelved_by: Mapped[str | None] = mapped_column(String(100))
    shelved_until: Mapped[datetime | None]
    shelved_from: Mapped[str | None] = mapped_column(String(16))
    cleared_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class AlarmStepRow(Base):
    """One step of an alarm's history: who did what, when."""

    __tablename__ = "alarm_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"),
                                          index=True)
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")


# --- crews ---

class CrewRow(Base):
    """A field crew (``estate.crews``): skills (JSON list), where it starts from, how many
    incidents it may hold, whether it is stood down."""

    __tablename__ = "crews"

    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    skills: Mapped[list[Any]]
    position_x: Mapped[float] = mapped_column(Float, default=0.0)
    position_y: Mapped[float] = mapped_column(Float, default=0.0)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    retired_at: Mapped[datetime | None]


class CrewShiftRow(Base):
    """A weekly shift of a crew: ``days_mask`` bit 0 Monday, local minutes; an end at or
    before the start runs past midnight."""

    __tablename__ = "crew_shifts"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "crew_id"], ["crews.estate_id", "crews.id"],
                             ondelete="CASCADE"),
        UniqueConstraint("estate_id", "crew_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(String(64))
    crew_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int]
    days_mask: Mapped[int]
    start_minute: Mapped[int]
    end_minute: Mapped[int]


# --- incidents ---

class IncidentRow(Base):
    """An incident (``dispatch.incidents.model``). ``open_slot`` is 1 while it is open:
    one open incident per origin."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("estate_id", "origin", "open_slot"),
        one_of("status", INCIDENT_STATUSES, "status"),
        one_of("severity", SEVERITIES, "severity"),
        Index(None, "estate_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(200))
    open_slot: Mapped[int | None] = mapped_column(Integer)
    skill: Mapped[str] = mapped_column(String(32))
    position_x: Mapped[float] = mapped_column(Float, default=0.0)
    position_y: Mapped[float] = mapped_column(Float, default=0.0)
    facility_id: Mapped[str | None] = mapped_column(String(64))
    cause: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime]
    opened_by: Mapped[str] = mapped_column(String(100))
    respond_by: Mapped[datetime]
    resolve_by: Mapped[datetime]
    crew_id: Mapped[str | None] = mapped_column(String(64))
    on_site_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(100))
    close_reason: Mapped[str | None] = mapped_column(Text)


class IncidentAlarmRow(Base):
    """The alarms an incident was opened for, or that joined it."""

    __tablename__ = "incident_alarms"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    alarm_id: Mapped[int] = mapped_column(
        ForeignKey("alarms.id", ondelete="CASCADE"), primary_key=True, index=True)


class IncidentStepRow(Base):
    __tablename__ = "incident_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"),
                                             index=True)
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")


class AssignmentRow(Base):
    """A crew given an incident, by the planner or an operator (``pinned``), until it is
    released; ``current_slot`` is 1 for the current one: one per incident."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("incident_id", "current_slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"),
                                             index=True)
    estate_id: Mapped[str] = mapped_column(String(64))
    crew_id: Mapped[str] = mapped_column(String(64))
    current_slot: Mapped[int | None] = mapped_column(Integer)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    eta_s: Mapped[float | None] = mapped_column(Float)
    assigned_at: Mapped[datetime]
    assigned_by: Mapped[str] = mapped_column(String(100))
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(100))


# --- the shift log ---

class ShiftLogEntryRow(Base):
    """An operator's entry. ``entry_key``: the writer's idempotency key (a form sent twice
    writes one entry)."""

    __tablename__ = "shift_log_entries"
    __table_args__ = (
        UniqueConstraint("estate_id", "entry_key"),
        one_of("kind", ENTRY_KINDS, "kind"),
        Index(None, "estate_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    entry_key: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))


class HandoverRow(Base):
    """A handover between shifts: what was put in front of the incoming operator
    (``snapshot``: entries, alarms, incidents, as they stood) and when each signed.
    ``pending_slot`` is 1 until it is accepted: one handover waits per estate."""

    __tablename__ = "handovers"
    __table_args__ = (UniqueConstraint("estate_id", "pending_slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    outgoing: Mapped[str] = mapped_column(String(100))
    incoming: Mapped[str] = mapped_column(String(100))
    prepared_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    pending_slot: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    snapshot: Mapped[dict[str, Any]]


# --- the outbox ---

class OutboxEventRow(Base):
    """An event for other systems, written in the transaction of the change it reports;
    the webhook deliverer sends them in ``id`` order and marks them delivered."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        Index(None, "delivered_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(100))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
