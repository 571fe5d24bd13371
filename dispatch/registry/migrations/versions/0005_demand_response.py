"""Demand response: orders, each tenant's part in them (share, baseline, settlement), the
tenants' contract terms and the water and gas prices the statements bill.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-04 11:41:52.513427
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dr_orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("kw", sa.Float(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("programme", sa.String(length=100), nullable=False),
        sa.Column("payment_per_kwh", sa.Float(), nullable=False),
        sa.Column("penalty_per_kwh", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opt", sa.String(length=8), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.CheckConstraint("kind IN ('cap', 'cut')", name=op.f("ck_dr_orders_kind")),
        sa.CheckConstraint("opt IN ('pending', 'in', 'out')", name=op.f("ck_dr_orders_opt")),
        sa.CheckConstraint("source IN ('operator', 'openadr')", name=op.f("ck_dr_orders_source")),
        sa.CheckConstraint(
            "status IN ('received', 'split', 'settled', 'cancelled')",
            name=op.f("ck_dr_orders_status"),
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_dr_orders_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dr_orders")),
        sa.UniqueConstraint(
            "estate_id",
            "source",
            "external_id",
            name=op.f("uq_dr_orders_estate_id_source_external_id"),
        ),
    )
    with op.batch_alter_table("dr_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dr_orders_estate_id_start_at"), ["estate_id", "start_at"], unique=False
        )

    op.create_table(
        "utility_prices",
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("utility", sa.String(length=8), nullable=False),
        sa.Column("price_per_m3", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("utility IN ('water', 'gas')", name=op.f("ck_utility_prices_utility")),
        sa.ForeignKeyConstraint(
            ["estate_id"],
            ["estates.id"],
            name=op.f("fk_utility_prices_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("estate_id", "utility", name=op.f("pk_utility_prices")),
    )
    op.create_table(
        "dr_participations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("season_factor", sa.Float(), nullable=False),
        sa.Column("requested_kw", sa.JSON(), nullable=False),
        sa.Column("requested_kwh", sa.Float(), nullable=False),
        sa.Column("baseline_kw", sa.JSON(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("baseline_kwh", sa.Float(), nullable=True),
        sa.Column("metered_kwh", sa.Float(), nullable=True),
        sa.Column("delivered_kwh", sa.Float(), nullable=True),
        sa.Column("payment", sa.Float(), nullable=True),
        sa.Column("penalty", sa.Float(), nullable=True),
        sa.Column("fell_short", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["estate_id", "facility_id"],
            ["facilities.estate_id", "facilities.id"],
            name=op.f("fk_dr_participations_estate_id_facility_id_facilities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["dr_orders.id"],
            name=op.f("fk_dr_participations_order_id_dr_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dr_participations")),
        sa.UniqueConstraint(
            "order_id", "facility_id", name=op.f("uq_dr_participations_order_id_facility_id")
        ),
    )
    with op.batch_alter_table("dr_participations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dr_participations_estate_id_facility_id"),
            ["estate_id", "facility_id"],
            unique=False,
        )

    op.create_table(
        "tenant_contracts",
        sa.Column("estate_id", sa.String(length=64), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("flexible_kw", sa.Float(), nullable=True),
        sa.Column("allocation_rule", sa.String(length=16), nullable=False),
        sa.Column("allocation_weight", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "allocation_rule IN ('peak', 'energy', 'equal', 'fixed')",
            name=op.f("ck_tenant_contracts_allocation_rule"),
        ),
        sa.CheckConstraint(
            "priority IN ('critical', 'standard', 'flexible')",
            name=op.f("ck_tenant_contracts_priority"),
        ),
        sa.ForeignKeyConstraint(
            ["estate_id", "facility_id"],
            ["facilities.estate_id", "facilities.id"],
            name=op.f("fk_tenant_contracts_estate_id_facility_id_facilities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("estate_id", "facility_id", name=op.f("pk_tenant_contracts")),
    )


def downgrade() -> None:
    op.drop_table("tenant_contracts")
    with op.batch_alter_table("dr_participations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dr_participations_estate_id_facility_id"))

    op.drop_table("dr_participations")
    op.drop_table("utility_prices")
    with op.batch_alter_table("dr_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dr_orders_estate_id_start_at"))

    op.drop_table("dr_orders")
