"""The demand-response tables: orders, each tenant's part in an order (its share, its
baseline with the method and parameters that made it, its settlement), the tenants'
contract terms for curtailment and the shared assets, and the water and gas prices the
statements bill.

An order received over OpenADR is unique by (estate, source, external id), so a VTN that
sends an event again (every poll until it is answered) adds no second order.
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
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.registry.base import Base, one_of

DR_ORDER_KINDS: Final = ("cap", "cut")
DR_ORDER_SOURCES: Final = ("operator", "openadr")
DR_ORDER_STATUSES: Final = ("received", "split", "settled", "cancelled")
DR_OPT_STATES: Final = ("pending", "in", "out")
PRIORITY_CLASSES: Final = ("critical", "standard", "flexible")
ALLOCATION_RULES: Final = ("peak", "energy", "equal", "fixed")
PRICED_UTILITIES: Final = ("water", "gas")


class DemandResponseOrderRow(Base):
    """An order: ``kind`` cap (import at most ``kw``) or cut (``kw`` below baseline)."""

    __tablename__ = "dr_orders"
    __table_args__ = (
        one_of("kind", DR_ORDER_KINDS, "kind"),
        one_of("source", DR_ORDER_SOURCES, "source"),
        one_of("status", DR_ORDER_STATUSES, "status"),
        one_of("opt", DR_OPT_STATES, "opt"),
        UniqueConstraint("estate_id", "source", "external_id"),
        Index(None, "estate_id", "start_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    kw: Mapped[float] = mapped_column(Float)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    programme: Mapped[str] = mapped_column(String(100))
    payment_per_kwh: Mapped[float] = mapped_column(Float)
    penalty_per_kwh: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    opt: Mapped[str] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The split's policy, the estate's baseline and requested kW per step, the latest
    plan's shortfall by tenant and step."""


class DemandResponseParticipationRow(Base):
    """One tenant in one order: asked, baseline, and (once settled) delivered and money."""

    __tablename__ = "dr_participations"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "facility_id"],
                             ["facilities.estate_id", "facilities.id"], ondelete="CASCADE"),
        UniqueConstraint("order_id", "facility_id"),
        Index(None, "estate_id", "facility_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("dr_orders.id", ondelete="CASCADE"))
    estate_id: Mapped[str] = mapped_column(String(64))
    facility_id: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    weight: Mapped[float] = mapped_column(Float)
    season_factor: Mapped[float] = mapped_column(Float)
    requested_kw: Mapped[list[Any]] = mapped_column()
    requested_kwh: Mapped[float] = mapped_column(Float)
    baseline_kw: Mapped[list[Any]] = mapped_column()
    baseline: Mapped[dict[str, Any]] = mapped_column()
    """The method, its parameters, the like days taken and the adjustment."""
    settled_at: Mapped[datetime | None]
    baseline_kwh: Mapped[float | None] = mapped_column(Float)
    metered_kwh: Mapped[float | None] = mapped_column(Float)
    delivered_kwh: Mapped[float | None] = mapped_column(Float)
    payment: Mapped[float | None] = mapped_column(Float)
    penalty: Mapped[float | None] = mapped_column(Float)
    fell_short: Mapped[bool | None] = mapped_column(Boolean)


class TenantContractRow(Base):
    """A tenant's terms: its priority class in a split, how much it agreed it can shed,
    and its rule for the shared assets' cost and savings."""

    __tablename__ = "tenant_contracts"
    __table_args__ = (
        ForeignKeyConstraint(["estate_id", "facility_id"],
                             ["facilities.estate_id", "facilities.id"], ondelete="CASCADE"),
        one_of("priority", PRIORITY_CLASSES, "priority"),
        one_of("allocation_rule", ALLOCATION_RULES, "allocation_rule"),
    )

    estate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    facility_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    priority: Mapped[str] = mapped_column(String(16))
    flexible_kw: Mapped[float | None] = mapped_column(Float)
    allocation_rule: Mapped[str] = mapped_column(String(16))
    allocation_weight: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]


class UtilityPriceRow(Base):
    """The estate's price per m³ of water or gas, billed to the tenants."""

    __tablename__ = "utility_prices"
    __table_args__ = (one_of("utility", PRICED_UTILITIES, "utility"),)

    estate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    utility: Mapped[str] = mapped_column(String(8), primary_key=True)
    price_per_m3: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]
