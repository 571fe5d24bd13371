"""An order's life in the registry: received (entered or from the VTN), opted in or out,
split among the tenants (baselines, shares, a notice to each tenant), settled.

    receive ─► decide (opt in/out) ─► split: baselines ─► fair split ─► parts + notices
                                          (the rolling plan takes the order from here)
    after the window: settle ─► each tenant's delivered, payment, penalty ─► dr.settled

Every change and its outbox events commit in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.dr.baselines import Baseline, BaselineMethod, high_x_of_y
from dispatch.dr.metered import QUARTER_MS, MeteredData, grid, per_facility
from dispatch.dr.orders import Order, OrderDraft, check_draft
from dispatch.dr.records import order_of, order_payload, order_values
from dispatch.dr.split import Participant, Split, SplitPolicy, split_order
from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.registry.estate_store import planning_inputs
from dispatch.registry.outbox import add_event
from estate.errors import DemandResponseError

log = logging.getLogger(__name__)

DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class DemandResponse:
    """What the order functions need: the registry, the metered data, the rules."""

    registry: Registry
    metered: MeteredData
    estate_id: str
    method: BaselineMethod = field(default_factory=BaselineMethod)
    policy: SplitPolicy = field(default_factory=SplitPolicy)


def receive(dr: DemandResponse, draft: OrderDraft, by: str, at: datetime,
            opt: str = "pending") -> tuple[Order, bool]:
    """Store a checked order (an external id seen before gives the stored one back)."""
    check_draft(draft)
    with dr.registry.writing() as session:
        order_id, new = dr_book.add_order(session, dr.estate_id, order_values(draft, opt),
                                          at, by)
        order = order_of(dr_book.order(session, dr.estate_id, order_id))
        if new:
            add_event(session, dr.estate_id, "dr.order.received", "dr_order", str(order_id),
                      order_payload(order), at, f"dr:{order_id}:received")
    if new:
        log.info("demand response: %s received", order.describe())
    return order, new


def decide(dr: DemandResponse, order_id: int, opt: str, by: str, at: datetime) -> Order:
    with dr.registry.writing() as session:
        return order_of(dr_book.decide(session, dr.estate_id, order_id, opt, by, at))


def get(dr: DemandResponse, order_id: int) -> Order:
    with dr.registry.reading() as session:
        return order_of(dr_book.order(session, dr.estate_id, order_id))


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """Baselines and demand of the tenants over an order's window."""

    timezone: str
    times: Any
    baselines: dict[str, Baseline]
    metered_kw: dict[str, Any]
    meters: dict[str, list[str]]


def _event_days(dr: DemandResponse, order: Order, tz: ZoneInfo, lookback: int) -> frozenset[date]:
    """Days of the estate's earlier events (opted into) within the baseline's lookback."""
    since = order.start - timedelta(days=lookback)
    with dr.registry.reading() as session:
        earlier = dr_book.orders(session, dr.estate_id, overlapping=(since, order.start))
    return frozenset(o.start_at.astimezone(tz).date() for o in earlier
                     if o.id != order.id and o.opt != "out")


def prepare(dr: DemandResponse, order: Order) -> Prepared:
    """Each tenant's baseline (and what its meters read) over the order's window."""
    inputs = planning_inputs(dr.registry, dr.estate_id)
    tz = ZoneInfo(inputs.estate.timezone)
    meters: dict[str, list[str]] = {}
    for m in inputs.incomers:
        meters.setdefault(m.facility_id, []).append(m.id)
    lookback = dr.method.lookback_days()
    method = BaselineMethod(dr.method.x, dr.method.y, dr.method.adjustment,
                            dr.method.adjustment_hours, dr.method.adjustment_cap,
                            dr.method.exclude | _event_days(dr, order, tz, lookback))
    first = order.start_ms - lookback * DAY_MS
    history = grid(first, order.end_ms)
    keys = [(f, d) for f, devices in meters.items() for d in devices]
    demand = per_facility(dr.metered.power_kw(dr.estate_id, keys, first, order.end_ms),
                          meters, history)
    baselines = {f: high_x_of_y(history, values, order.start_ms, order.end_ms,
                                inputs.estate.timezone, method)
                 for f, values in demand.items()}
    inside = history >= order.start_ms
    return Prepared(inputs.estate.timezone, history[inside], baselines,
                    {f: v[inside] for f, v in demand.items()}, meters)


def requested_kw(order: Order, estate_baseline: Any) -> Any:
    """What the estate must shed per step: down to the cap, or the cut."""
    if order.kind == "cap":
        return np.maximum(np.nan_to_num(estate_baseline) - order.kw, 0.0)
    return np.full(np.shape(estate_baseline), order.kw)


def split(dr: DemandResponse, order_id: int, at: datetime) -> Split:
    """Baselines, the fair split, each tenant's part and notice; the order is ``split``."""
    order = get(dr, order_id)
    if order.opt == "out" or order.status in ("settled", "cancelled"):
        raise DemandResponseError(f"order {order_id} is {order.status}, opted "
                                  f"{order.opt}: nothing to split")
    prepared = prepare(dr, order)
    tz = ZoneInfo(prepared.timezone)
    season = datetime(order.start.astimezone(tz).year, 1, 1, tzinfo=tz)
    with dr.registry.reading() as session:
        terms = dr_book.contracts(session, dr.estate_id)
        past = dr_book.requested_since(session, dr.estate_id, season)
        earlier = {p.facility_id: p.requested_kwh for p in dr_book.participations(
            session, order_id)}
    participants = []
    for facility, baseline in prepared.baselines.items():
        term = terms.get(facility)
        participants.append(Participant(
            facility, np.nan_to_num(baseline.values_kw),
            term.priority if term else "standard",
            float("inf") if term is None or term.flexible_kw is None else term.flexible_kw,
            past.get(facility, 0.0) - earlier.get(facility, 0.0)))
    estate_baseline = np.sum([p.baseline_kw for p in participants], axis=0) if participants \
        else np.zeros(prepared.times.size)
    result = split_order(requested_kw(order, estate_baseline), participants, dr.policy)
    _store_split(dr, order, prepared, result, estate_baseline, at)
    return result


def _store_split(dr: DemandResponse, order: Order, prepared: Prepared, result: Split,
                 estate_baseline: Any, at: datetime) -> None:
    hours = QUARTER_MS / 3_600_000
    parts: list[dict[str, Any]] = []
    for share in result.shares:
        baseline = prepared.baselines[share.facility]
        parts.append({
            "facility_id": share.facility, "priority": "standard", "weight": share.weight,
            "season_factor": share.season_factor,
            "requested_kw": [round(float(v), 3) for v in share.kw],
            "requested_kwh": float(share.kw.sum() * hours),
            "baseline_kw": [None if not np.isfinite(v) else round(float(v), 3)
                            for v in baseline.values_kw],
            "baseline": baseline.record()})
    with dr.registry.writing() as session:
        terms = dr_book.contracts(session, dr.estate_id)
        for part in parts:
            term = terms.get(str(part["facility_id"]))
            part["priority"] = term.priority if term else "standard"
        dr_book.save_participations(session, dr.estate_id, order.id, parts)
        dr_book.set_status(session, dr.estate_id, order.id, "split", {
            "policy": result.policy.describe(),
            "estate_baseline_kw": [round(float(v), 3) for v in estate_baseline],
            "requested_kw": [round(float(v), 3) for v in requested_kw(order, estate_baseline)],
            "unassigned_kw": [round(float(v), 3) for v in result.unassigned_kw],
            "split_at": at.isoformat()})
        for part in parts:
            add_event(session, dr.estate_id, "dr.notice", "facility", str(part["facility_id"]),
                      {**order_payload(order), "facility": part["facility_id"],
                       "share_kw": part["requested_kw"],
                       "share_kwh": round(float(part["requested_kwh"]), 3),
                       "priority": part["priority"]},
                      at, f"dr:{order.id}:notice:{part['facility_id']}:{at.isoformat()}")
    log.info("demand response: order %d split among %d tenants, %.0f kW at most unassigned",
             order.id, len(parts), float(result.unassigned_kw.max(initial=0.0)))
