"""Demand-response orders in the web view: list and read them (each tenant's share, the
plan's shortfall, the settlement); a supervisor enters one, opts in or out, settles.

The same functions as ``estate dr`` (``dispatch.dr.events``, ``dispatch.dr.settle``). An
account bound to a facility sees the orders with its own share only; the changes are the
estate's, a supervisor's. Refusals of the order functions are 422 with the reason, an
order that is not there 404 (``dispatch.web.app``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatch.dr.events import decide, receive, split
from dispatch.dr.orders import OrderDraft, Programme
from dispatch.dr.records import order_of
from dispatch.dr.settle import settle
from dispatch.registry import dr_book
from dispatch.registry.account_desk import Identity
from dispatch.registry.dr_book import OrderRecord, ParticipationRecord
from dispatch.web.auth import Supervisor, Viewer, facility_scope, whole_estate
from dispatch.web.deps import DemandResponseDep

MAX_LIST: Final = 200
ORDERS: Final = "demand-response decisions"

OrderId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class NewOrder(BaseModel):
    """An order entered by hand: a cap on the estate's import or a cut below baseline."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cap", "cut"]
    kw: float = Field(ge=0, le=1e6, description="the cap, or the cut, in kW")
    start: AwareDatetime = Field(description="window start, on a quarter-hour, with offset")
    end: AwareDatetime = Field(description="window end, on a quarter-hour, with offset")
    programme: str = Field("demand response", min_length=1, max_length=100)
    payment_per_kwh: float = Field(0.0, ge=0, le=1e4)
    penalty_per_kwh: float = Field(0.0, ge=0, le=1e4)
    currency: str = Field("EUR", min_length=1, max_length=8)
    opt: Literal["in", "out", "pending"] = "in"
    note: str = Field("", max_length=500)


class OptDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opt: Literal["in", "out"]


def _now() -> datetime:
    return datetime.now(UTC)


def _who(identity: Identity) -> str:
    return f"operator:{identity.user.username}"


def _summary(record: OrderRecord) -> dict[str, Any]:
    order = order_of(record)
    return {"id": order.id, "kind": order.kind, "kw": order.kw,
            "start": order.start.isoformat(), "end": order.end.isoformat(),
            "programme": order.programme.name,
            "payment_per_kwh": order.programme.payment_per_kwh,
            "penalty_per_kwh": order.programme.penalty_per_kwh,
            "currency": order.programme.currency, "source": order.source,
            "status": order.status, "opt": order.opt, "note": order.note,
            "created_by": order.created_by, "decided_by": record.decided_by,
            "description": order.describe()}


def _part(p: ParticipationRecord) -> dict[str, Any]:
    settled = None if p.settled_at is None else {
        "settled_at": p.settled_at.isoformat(), "baseline_kwh": p.baseline_kwh,
        "metered_kwh": p.metered_kwh, "delivered_kwh": p.delivered_kwh,
        "payment": p.payment, "penalty": p.penalty, "fell_short": p.fell_short}
    return {"facility": p.facility_id, "priority": p.priority, "weight": p.weight,
            "season_factor": p.season_factor, "requested_kwh": p.requested_kwh,
            "requested_kw": p.requested_kw,
            "peak_kw": max((v for v in p.requested_kw), default=0.0),
            "baseline": p.baseline, "settlement": settled}


def shortfall(detail: dict[str, Any], scope: str | None) -> dict[str, Any]:
    """What the plan could not deliver (per quarter-hour, by tenant) and what the split
    left unassigned; for an account of a facility, its own part only."""
    plan = detail.get("plan") or {}
    steps = []
    for step in plan.get("short_steps", []):
        by_tenant = {f: kw for f, kw in (step.get("by_tenant") or {}).items()
                     if scope is None or f == scope}
        if scope is not None and not by_tenant:
            continue
        steps.append({"time": datetime.fromtimestamp(step["time_ms"] / 1000, UTC).isoformat(),
                      "short_kw": step["short_kw"] if scope is None
                      else sum(by_tenant.values()), "by_tenant": by_tenant})
    unassigned = detail.get("unassigned_kw") or []
    return {"planned": bool(plan), "steps": steps,
            "short_kw_max": max((s["short_kw"] for s in steps), default=0.0),
            "unassigned_kw_max": None if scope is not None else max(unassigned, default=0.0),
            "setpoints": {f: a for f, a in (plan.get("setpoints") or {}).items()
                          if scope is None or f == scope}}


router = APIRouter(prefix="/api/dr", tags=["demand response"])


@router.get("/orders")
def orders(dr: DemandResponseDep, identity: Viewer,
           limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50) -> dict[str, Any]:
    """The estate's newest orders, each with the tenants' shares (an account of a facility:
    its own share only)."""
    scope = facility_scope(identity, None)
    with dr.registry.reading() as session:
        records = dr_book.orders(session, dr.estate_id, limit=10_000)[-limit:]
        listed = []
        for record in reversed(records):
            parts = [p for p in dr_book.participations(session, record.id)
                     if scope is None or p.facility_id == scope]
            listed.append(_summary(record) | {"shares": [
                {"facility": p.facility_id, "requested_kwh": p.requested_kwh,
                 "peak_kw": max(p.requested_kw, default=0.0), "settled": p.settled_at
                 is not None, "fell_short": p.fell_short} for p in parts]})
    return {"estate": dr.estate_id, "facility": scope, "orders": listed}


@router.get("/orders/{order_id}")
def order(order_id: OrderId, dr: DemandResponseDep, identity: Viewer) -> dict[str, Any]:
    """An order: each tenant's share, baseline and settlement, and the plan's shortfall."""
    scope = facility_scope(identity, None)
    with dr.registry.reading() as session:
        record = dr_book.order(session, dr.estate_id, order_id)
        parts = [p for p in dr_book.participations(session, order_id)
                 if scope is None or p.facility_id == scope]
    return _summary(record) | {"facility": scope, "parts": [_part(p) for p in parts],
                               "shortfall": shortfall(record.detail, scope)}


@router.post("/orders", status_code=201)
def add_order(body: NewOrder, dr: DemandResponseDep, identity: Supervisor) -> dict[str, Any]:
    """Enter an order by hand (as ``estate dr add``); opted in, it is split among the
    tenants at once. The order names the logged-in supervisor."""
    whole_estate(identity, ORDERS)
    draft = OrderDraft(body.kind, body.kw, body.start, body.end,
                       Programme(body.programme, body.payment_per_kwh, body.penalty_per_kwh,
                                 body.currency), note=body.note)
    now = _now()
    made, new = receive(dr, draft, _who(identity), now, opt=body.opt)
    if made.opt == "in":
        split(dr, made.id, now)
    return order(made.id, dr, identity) | {"new": new}


@router.post("/orders/{order_id}/opt")
def opt(order_id: OrderId, body: OptDecision, dr: DemandResponseDep, identity: Supervisor
        ) -> dict[str, Any]:
    """Opt into an order or out of it (as ``estate dr opt``): the worker splits an order
    opted into, and tells an OpenADR order's VTN."""
    whole_estate(identity, ORDERS)
    decide(dr, order_id, body.opt, _who(identity), _now())
    return order(order_id, dr, identity)


@router.post("/orders/{order_id}/settle")
def settle_order(order_id: OrderId, dr: DemandResponseDep, identity: Supervisor
                 ) -> dict[str, Any]:
    """Settle a split order whose window has ended (as ``estate dr settle``)."""
    whole_estate(identity, ORDERS)
    settle(dr, order_id, _now())
    return order(order_id, dr, identity)
