"""The control room: networks, alarms and their steps, crews and their shifts, incidents,
their alarms, steps and assignments, the shift log, handovers and the outbox of events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 20:22:56.084461
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=100), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_events_dedupe_key")),
    )
    op.create_index(
        op.f("ix_outbox_events_delivered_at_id"), "outbox_events", ["delivered_at", "id"]
    )
    op.create_index(op.f("ix_outbox_events_estate_id"), "outbox_events", ["estate_id"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("rule_kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("active_slot", sa.Integer(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("message", sa.String(length=300), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("shelved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shelved_by", sa.String(length=100), nullable=True),
        sa.Column("shelved_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shelved_from", sa.String(length=16), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "severity IN ('critical', 'high', 'medium', 'low')", name=op.f("ck_alarms_severity")
        ),
        sa.CheckConstraint(
            "state IN ('raised', 'acknowledged', 'shelved', 'cleared')",
            name=op.f("ck_alarms_state"),
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_alarms_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
        sa.UniqueConstraint(
            "estate_id",
            "source",
            "rule_id",
            "active_slot",
            name=op.f("uq_alarms_estate_id_source_rule_id_active_slot"),
        ),
    )
    op.create_index(op.f("ix_alarms_estate_id_state"), "alarms", ["estate_id", "state"])
    op.create_table(
        "crews",
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("position_x", sa.Float(), nullable=False),
        sa.Column("position_y", sa.Float(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_crews_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("estate_id", "id", name=op.f("pk_crews")),
    )
    op.create_table(
        "handovers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("outgoing", sa.String(length=100), nullable=False),
        sa.Column("incoming", sa.String(length=100), nullable=False),
        sa.Column("prepared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_slot", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_handovers_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handovers")),
        sa.UniqueConstraint(
            "estate_id", "pending_slot", name=op.f("uq_handovers_estate_id_pending_slot")
        ),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("open_slot", sa.Integer(), nullable=True),
        sa.Column("skill", sa.String(length=32), nullable=False),
        sa.Column("position_x", sa.Float(), nullable=False),
        sa.Column("position_y", sa.Float(), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=True),
        sa.Column("cause", sa.String(length=200), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=100), nullable=False),
        sa.Column("respond_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolve_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("crew_id", sa.String(length=64), nullable=True),
        sa.Column("on_site_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=100), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "severity IN ('critical', 'high', 'medium', 'low')", name=op.f("ck_incidents_severity")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'assigned', 'on_site', 'closed')", name=op.f("ck_incidents_status")
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_incidents_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint(
            "estate_id", "origin", "open_slot", name=op.f("uq_incidents_estate_id_origin_open_slot")
        ),
    )
    op.create_index(op.f("ix_incidents_estate_id_status"), "incidents", ["estate_id", "status"])
    op.create_table(
        "networks",
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("utility", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("tolerance_abs", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "utility IN ('electricity', 'water', 'gas')", name=op.f("ck_networks_utility")
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_networks_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("estate_id", "id", name=op.f("pk_networks")),
    )
    op.create_table(
        "shift_log_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("entry_key", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "kind IN ('event', 'action', 'open_item')", name=op.f("ck_shift_log_entries_kind")
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_shift_log_entries_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_log_entries")),
        sa.UniqueConstraint(
            "estate_id", "entry_key", name=op.f("uq_shift_log_entries_estate_id_entry_key")
        ),
    )
    op.create_index(
        op.f("ix_shift_log_entries_estate_id_at"), "shift_log_entries", ["estate_id", "at"]
    )
    op.create_table(
        "alarm_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alarm_id"],
            ["alarms.id"],
            name=op.f("fk_alarm_steps_alarm_id_alarms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_steps")),
    )
    op.create_index(op.f("ix_alarm_steps_alarm_id"), "alarm_steps", ["alarm_id"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("crew_id", sa.String(length=64), nullable=False),
        sa.Column("current_slot", sa.Integer(), nullable=True),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by", sa.String(length=100), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_assignments_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint(
            "incident_id", "current_slot", name=op.f("uq_assignments_incident_id_current_slot")
        ),
    )
    op.create_index(op.f("ix_assignments_incident_id"), "assignments", ["incident_id"])
    op.create_table(
        "crew_shifts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("crew_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("days_mask", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["estate_id", "crew_id"],
            ["crews.estate_id", "crews.id"],
            name=op.f("fk_crew_shifts_estate_id_crew_id_crews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crew_shifts")),
        sa.UniqueConstraint(
            "estate_id",
            "crew_id",
            "position",
            name=op.f("uq_crew_shifts_estate_id_crew_id_position"),
        ),
    )
    op.create_table(
        "incident_alarms",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alarm_id"],
            ["alarms.id"],
            name=op.f("fk_incident_alarms_alarm_id_alarms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_alarms_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("incident_id", "alarm_id", name=op.f("pk_incident_alarms")),
    )
    op.create_index(op.f("ix_incident_alarms_alarm_id"), "incident_alarms", ["alarm_id"])
    op.create_table(
        "incident_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_steps_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_steps")),
    )
    op.create_index(op.f("ix_incident_steps_incident_id"), "incident_steps", ["incident_id"])
    op.create_table(
        "network_nodes",
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("network_id", sa.String(length=64), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("parent_facility_id", sa.String(length=64), nullable=True),
        sa.Column("parent_meter_id", sa.String(length=64), nullable=True),
        sa.Column("losses", sa.Float(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=True),
        sa.Column("tolerance_abs", sa.Float(), nullable=True),
        sa.Column("balance", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["estate_id", "facility_id", "meter_id"],
            ["meters.estate_id", "meters.facility_id", "meters.id"],
            name=op.f("fk_network_nodes_estate_id_facility_id_meter_id_meters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["estate_id", "network_id"],
            ["networks.estate_id", "networks.id"],
            name=op.f("fk_network_nodes_estate_id_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "estate_id", "network_id", "facility_id", "meter_id", name=op.f("pk_network_nodes")
        ),
    )


def downgrade() -> None:
    op.drop_table("network_nodes")
    op.drop_index(op.f("ix_incident_steps_incident_id"), table_name="incident_steps")
    op.drop_table("incident_steps")
    op.drop_index(op.f("ix_incident_alarms_alarm_id"), table_name="incident_alarms")
    op.drop_table("incident_alarms")
    op.drop_table("crew_shifts")
    op.drop_index(op.f("ix_assignments_incident_id"), table_name="assignments")
    op.drop_table("assignments")
    op.drop_index(op.f("ix_alarm_steps_alarm_id"), table_name="alarm_steps")
    op.drop_table("alarm_steps")
    op.drop_index(op.f("ix_shift_log_entries_estate_id_at"), table_name="shift_log_entries")
    op.drop_table("shift_log_entries")
    op.drop_table("networks")
    op.drop_index(op.f("ix_incidents_estate_id_status"), table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("handovers")
    op.drop_table("crews")
    op.drop_index(op.f("ix_alarms_estate_id_state"), table_name="alarms")
    op.drop_table("alarms")
    op.drop_index(op.f("ix_outbox_events_estate_id"), table_name="outbox_events")
    op.drop_index(op.f("ix_outbox_events_delivered_at_id"), table_name="outbox_events")
    op.drop_table("outbox_events")
