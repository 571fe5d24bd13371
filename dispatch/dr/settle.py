"""After an event: each tenant's settlement against its baseline, stored beside its part
in the order, with a ``dr.settled`` event per tenant.

The baseline is made again at settlement with the same-day adjustment, now that the hours
before the window are metered; it replaces the split's (a forecast of it), and its method
and parameters are stored with it.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np

from dispatch.dr.events import DemandResponse, get, prepare
from dispatch.dr.metered import QUARTER_MS
from dispatch.dr.records import order_payload
from dispatch.dr.settlement import TenantSettlement, settle_tenant
from dispatch.registry import dr_book
from dispatch.registry.outbox import add_event
from estate.errors import DemandResponseError

log = logging.getLogger(__name__)


def settle(dr: DemandResponse, order_id: int, at: datetime) -> list[TenantSettlement]:
    """Settle a split order whose window has ended."""
    order = get(dr, order_id)
    if order.status != "split":
        raise DemandResponseError(f"order {order_id} is {order.status}: only a split order "
                                  "can be settled")
    if at < order.end:
        raise DemandResponseError(f"order {order_id} runs until {order.end.isoformat()}: "
                                  "settle it after")
    prepared = prepare(dr, order)
    with dr.registry.reading() as session:
        parts = dr_book.participations(session, order_id)
    hours = QUARTER_MS / 3_600_000
    results = []
    for part in parts:
        baseline = prepared.baselines.get(part.facility_id)
        requested = np.asarray(part.requested_kw, dtype=np.float64)
        if baseline is None or not baseline.known:
            # No baseline now: keep the split's, so the tenant is settled on what it was told.
            values = np.array([np.nan if v is None else v for v in part.baseline_kw])
            record = part.baseline | {"note": "settled on the split's baseline"}
        else:
            values, record = baseline.values_kw, baseline.record()
        metered = prepared.metered_kw.get(part.facility_id, np.full(requested.size, np.nan))
        result = settle_tenant(part.facility_id, order.programme, hours, requested, values,
                               metered)
        results.append((result, values, record))
    with dr.registry.writing() as session:
        for result, values, record in results:
            dr_book.save_settlement(session, order_id, result.facility, {
                "settled_at": at, "baseline_kwh": result.baseline_kwh,
                "metered_kwh": result.metered_kwh, "delivered_kwh": result.delivered_kwh,
                "payment": result.payment, "penalty": result.penalty,
                "fell_short": result.fell_short, "baseline": record,
                "baseline_kw": [None if not np.isfinite(v) else round(float(v), 3)
                                for v in values]})
            add_event(session, dr.estate_id, "dr.settled", "facility", result.facility,
                      {**order_payload(order), "facility": result.facility,
                       "requested_kwh": round(result.requested_kwh, 3),
                       "delivered_kwh": round(result.delivered_kwh, 3),
                       "payment": round(result.payment, 2), "penalty": round(result.penalty, 2),
                       "fell_short": result.fell_short},
                      at, f"dr:{order_id}:settled:{result.facility}")
        dr_book.set_status(session, dr.estate_id, order_id, "settled",
                           {"settled_at": at.isoformat()})
    log.info("demand response: order %d settled: %d tenants, %d short", order_id,
             len(results), sum(r.fell_short for r, _, _ in results))
    return [r for r, _, _ in results]
