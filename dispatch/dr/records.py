"""Registry rows of demand response as the domain's values, and back."""

from __future__ import annotations

from typing import Any

from dispatch.dr.orders import Order, OrderDraft, Programme
from dispatch.registry.dr_book import OrderRecord


def order_of(record: OrderRecord) -> Order:
    return Order(record.id, record.estate_id, record.kind, record.kw, record.start_at,
                 record.end_at, Programme(record.programme, record.payment_per_kwh,
                                          record.penalty_per_kwh, record.currency),
                 record.source, record.external_id, record.status, record.opt, record.note,
                 record.created_at, record.created_by)


def order_values(draft: OrderDraft, opt: str = "pending") -> dict[str, Any]:
    """The registry columns of a new order."""
    return {"kind": draft.kind, "kw": draft.kw, "start_at": draft.start, "end_at": draft.end,
            "programme": draft.programme.name[:100],
            "payment_per_kwh": draft.programme.payment_per_kwh,
            "penalty_per_kwh": draft.programme.penalty_per_kwh,
            "currency": draft.programme.currency[:8], "source": draft.source,
            "external_id": None if draft.external_id is None else draft.external_id[:200],
            "note": draft.note[:500], "opt": opt}


def order_payload(order: Order) -> dict[str, Any]:
    """What an outbox event says of an order."""
    return {"order": order.id, "kind": order.kind, "kw": order.kw,
            "start": order.start.isoformat(), "end": order.end.isoformat(),
            "source": order.source, "external_id": order.external_id,
            "programme": order.programme.name}
