"""The demand-response book: orders, the tenants' parts in them, the tenants' contract
terms and the utility prices. Each function takes a ``Session`` in a transaction the
caller commits (``Registry.writing()``), so an order's change and its outbox events
(``dispatch.registry.outbox.add_event``) commit together. Rows go out as frozen records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from dispatch.registry.demand_response import (
    DR_OPT_STATES,
    DemandResponseOrderRow,
    DemandResponseParticipationRow,
    TenantContractRow,
    UtilityPriceRow,
)
from dispatch.registry.models import CapacityLimitRow, MeterRow
from dispatch.registry.networks import network_links
from dispatch.registry.outbox import RecordNotFound, insert_ignoring
from estate.errors import DemandResponseError

_orders = cast(Table, DemandResponseOrderRow.__table__)
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    estate_id: str
    kind: str
    kw: float
    start_at: datetime
    end_at: datetime
    programme: str
    payment_per_kwh: float
    penalty_per_kwh: float
    currency: str
    source: str
    external_id: str | None
    status: str
    opt: str
    note: str
    created_at: datetime
    created_by: str
    decided_at: datetime | None
    decided_by: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParticipationRecord:
    order_id: int
    facility_id: str
    priority: str
    weight: float
    season_factor: float
    requested_kw: list[float]
    requested_kwh: float
    baseline_kw: list[float | None]
    baseline: dict[str, Any]
    settled_at: datetime | None
    baseline_kwh: float | None
    metered_kwh: float | None
    delivered_kwh: float | None
    payment: float | None
    penalty: float | None
    fell_short: bool | None


@dataclass(frozen=True, slots=True)
class ContractRecord:
    facility_id: str
    priority: str
    flexible_kw: float | None
    allocation_rule: str
    allocation_weight: float


def _order(row: DemandResponseOrderRow) -> OrderRecord:
    return OrderRecord(row.id, row.estate_id, row.kind, row.kw, row.start_at, row.end_at,
                       row.programme, row.payment_per_kwh, row.penalty_per_kwh, row.currency,
                       row.source, row.external_id, row.status, row.opt, row.note,
                       row.created_at, row.created_by, row.decided_at, row.decided_by,
                       dict(row.detail or {}))


def _participation(row: DemandResponseParticipationRow) -> ParticipationRecord:
    return ParticipationRecord(
        row.order_id, row.facility_id, row.priority, row.weight, row.season_factor,
        list(row.requested_kw), row.requested_kwh, list(row.baseline_kw), dict(row.baseline),
        row.settled_at, row.baseline_kwh, row.metered_kwh, row.delivered_kwh, row.payment,
        row.penalty, row.fell_short)


def add_order(session: Session, estate_id: str, values: Mapping[str, Any], at: datetime,
              by: str) -> tuple[int, bool]:
    """Store an order (``values``: the columns kind ... note); its id and whether it is
    new. An order from a source with an ``external_id`` already stored is not added again."""
    row = {**values, "estate_id": estate_id, "status": "received",
           "opt": values.get("opt", "pending"), "note": str(values.get("note", ""))[:MAX_TEXT],
           "created_at": at, "created_by": by[:100], "detail": {}}
    if values.get("external_id") is not None:
        new = insert_ignoring(session, _orders, row, ["estate_id", "source", "external_id"])
        if new is not None:
            return int(new), True
        existing = session.scalars(select(DemandResponseOrderRow.id).where(
            DemandResponseOrderRow.estate_id == estate_id,
            DemandResponseOrderRow.source == values["source"],
            DemandResponseOrderRow.external_id == values["external_id"])).one()
        return int(existing), False
    added = DemandResponseOrderRow(**row)
    session.add(added)
    session.flush()
    return added.id, True


def _row(session: Session, estate_id: str, order_id: int) -> DemandResponseOrderRow:
    row = session.get(DemandResponseOrderRow, order_id)
    if row is None or row.estate_id != estate_id:
        raise RecordNotFound(f"no demand-response order {order_id} in estate {estate_id}")
    return row


def order(session: Session, estate_id: str, order_id: int) -> OrderRecord:
    return _order(_row(session, estate_id, order_id))


def order_by_external_id(session: Session, estate_id: str, source: str,
                         external_id: str) -> OrderRecord | None:
    row = session.scalars(select(DemandResponseOrderRow).where(
        DemandResponseOrderRow.estate_id == estate_id, DemandResponseOrderRow.source == source,
        DemandResponseOrderRow.external_id == external_id)).one_or_none()
    return None if row is None else _order(row)


def orders(session: Session, estate_id: str, *, overlapping: tuple[datetime, datetime] | None
           = None, statuses: Sequence[str] | None = None, limit: int = 500) -> list[OrderRecord]:
    """An estate's orders by start time, those overlapping ``[start, end)`` if given."""
    query = select(DemandResponseOrderRow).where(DemandResponseOrderRow.estate_id == estate_id)
    if overlapping is not None:
        query = query.where(DemandResponseOrderRow.start_at < overlapping[1],
                            DemandResponseOrderRow.end_at > overlapping[0])
    if statuses is not None:
        query = query.where(DemandResponseOrderRow.status.in_(list(statuses)))
    return [_order(r) for r in session.scalars(
        query.order_by(DemandResponseOrderRow.start_at, DemandResponseOrderRow.id).limit(limit))]


def decide(session: Session, estate_id: str, order_id: int, opt: str, by: str,
           at: datetime) -> OrderRecord:
    """The operator's opt in or out."""
    if opt not in DR_OPT_STATES[1:]:
        raise DemandResponseError(f"opt must be 'in' or 'out', not {opt[:20]!r}")
    row = _row(session, estate_id, order_id)
    if row.status in ("settled", "cancelled"):
        raise DemandResponseError(f"order {order_id} is {row.status}: too late to opt")
    row.opt, row.decided_by, row.decided_at = opt, by[:100], at
    return _order(row)


def set_status(session: Session, estate_id: str, order_id: int, status: str,
               detail: Mapping[str, Any] | None = None) -> None:
    row = _row(session, estate_id, order_id)
    row.status = status
    if detail:
        row.detail = {**(row.detail or {}), **detail}


def save_participations(session: Session, estate_id: str, order_id: int,
                        parts: Sequence[Mapping[str, Any]]) -> None:
    """Replace an order's tenant parts (the split is made again when the order changes)."""
    for old in session.scalars(select(DemandResponseParticipationRow).where(
            DemandResponseParticipationRow.order_id == order_id)):
        session.delete(old)
    session.flush()
    for part in parts:
        session.add(DemandResponseParticipationRow(order_id=order_id, estate_id=estate_id,
                                                   **part))


def participations(session: Session, order_id: int) -> list[ParticipationRecord]:
    return [_participation(r) for r in session.scalars(
        select(DemandResponseParticipationRow).where(
            DemandResponseParticipationRow.order_id == order_id)
        .order_by(DemandResponseParticipationRow.facility_id))]


def save_settlement(session: Session, order_id: int, facility_id: str,
                    values: Mapping[str, Any]) -> None:
    row = session.scalars(select(DemandResponseParticipationRow).where(
        DemandResponseParticipationRow.order_id == order_id,
        DemandResponseParticipationRow.facility_id == facility_id)).one_or_none()
    if row is None:
        raise RecordNotFound(f"tenant {facility_id} has no part in order {order_id}")
    for key, value in values.items():
        setattr(row, key, value)


def requested_since(session: Session, estate_id: str, since: datetime) -> dict[str, float]:
    """Per tenant, the kWh it was asked to shed in orders that started since ``since``
    (the season so far), orders opted out of left out."""
    rows = session.execute(
        select(DemandResponseParticipationRow.facility_id,
               DemandResponseParticipationRow.requested_kwh)
        .join(DemandResponseOrderRow,
              DemandResponseOrderRow.id == DemandResponseParticipationRow.order_id)
        .where(DemandResponseOrderRow.estate_id == estate_id,
               DemandResponseOrderRow.start_at >= since,
               DemandResponseOrderRow.opt != "out"))
    out: dict[str, float] = {}
    for facility, kwh in rows:
        out[facility] = out.get(facility, 0.0) + float(kwh)
    return out


def settled_between(session: Session, estate_id: str, start: datetime,
                    end: datetime) -> dict[str, float]:
    """Per tenant, its settlements' net (payment - penalty) of orders starting in
    ``[start, end)``."""
    rows = session.execute(
        select(DemandResponseParticipationRow.facility_id, DemandResponseParticipationRow.payment,
               DemandResponseParticipationRow.penalty)
        .join(DemandResponseOrderRow,
              DemandResponseOrderRow.id == DemandResponseParticipationRow.order_id)
        .where(DemandResponseOrderRow.estate_id == estate_id,
               DemandResponseOrderRow.start_at >= start, DemandResponseOrderRow.start_at < end,
               DemandResponseParticipationRow.settled_at.is_not(None)))
    out: dict[str, float] = {}
    for facility, payment, penalty in rows:
        out[facility] = out.get(facility, 0.0) + float(payment or 0.0) - float(penalty or 0.0)
    return out


def contracts(session: Session, estate_id: str) -> dict[str, ContractRecord]:
    return {r.facility_id: ContractRecord(r.facility_id, r.priority, r.flexible_kw,
                                          r.allocation_rule, r.allocation_weight)
            for r in session.scalars(select(TenantContractRow).where(
                TenantContractRow.estate_id == estate_id))}


def set_contract(session: Session, estate_id: str, record: ContractRecord,
                 at: datetime) -> None:
    row = session.get(TenantContractRow, (estate_id, record.facility_id))
    values = {"priority": record.priority, "flexible_kw": record.flexible_kw,
              "allocation_rule": record.allocation_rule,
              "allocation_weight": record.allocation_weight, "updated_at": at}
    if row is None:
        session.add(TenantContractRow(estate_id=estate_id, facility_id=record.facility_id,
                                      **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)


def utility_prices(session: Session, estate_id: str) -> dict[str, float]:
    return {r.utility: r.price_per_m3 for r in session.scalars(
        select(UtilityPriceRow).where(UtilityPriceRow.estate_id == estate_id))}


def set_utility_price(session: Session, estate_id: str, utility: str, price: float,
                      at: datetime) -> None:
    row = session.get(UtilityPriceRow, (estate_id, utility))
    if row is None:
        session.add(UtilityPriceRow(estate_id=estate_id, utility=utility, price_per_m3=price,
                                    updated_at=at))
    else:
        row.price_per_m3, row.updated_at = price, at


@dataclass(frozen=True, slots=True)
class BilledMeter:
    facility_id: str
    id: str
    kind: str
    incomer: bool


def billed_meters(session: Session, estate_id: str) -> list[BilledMeter]:
    """The meters a statement bills: electricity incomers, and the water and gas meters
    that feed no other meter (a distribution meter's flow is its children's, billed once)."""
    parents = {parent for _, _, parent in network_links(session, estate_id) if parent}
    rows = session.scalars(select(MeterRow).where(
        MeterRow.estate_id == estate_id, MeterRow.retired_at.is_(None))
        .order_by(MeterRow.facility_id, MeterRow.id))
    return [BilledMeter(r.facility_id, r.id, r.kind, r.incomer) for r in rows
            if (r.kind == "electricity" and r.incomer)
            or (r.kind in ("water", "gas") and f"{r.facility_id}/{r.id}" not in parents)]


def capacity_terms(session: Session, estate_id: str, day: date) -> tuple[float, float] | None:
    """The estate's contracted capacity (kW) and penalty per kW above it, valid on ``day``."""
    row = session.scalars(select(CapacityLimitRow).where(
        CapacityLimitRow.estate_id == estate_id, CapacityLimitRow.facility_id.is_(None),
        CapacityLimitRow.valid_from <= day,
        (CapacityLimitRow.valid_to.is_(None)) | (CapacityLimitRow.valid_to > day))
        .order_by(CapacityLimitRow.valid_from.desc())).first()
    return None if row is None else (row.limit_kw, row.penalty_per_kw)
