"""What the store holds: readings over a time range, and the latest freshness check."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query

from dispatch.jobs.freshness import FRESHNESS
from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import Spec, Store
from dispatch.web.ranges import checked_range
from estate.ports import SeriesRef, TimeRange, Where
from estate.stored import METER_TAGS, RAW_READINGS, reading_fields, readings_from_points
from estate.topics import IDENTIFIER_PATTERN
from estate.units import QUANTITIES

IDENT: Final = f"^{IDENTIFIER_PATTERN}$"
# One query answers at most this many rows per series: a month of 1-minute data.
MAX_ROWS_PER_SERIES: Final = 50_000
MAX_RANGE: Final = timedelta(days=31)
# The freshness answer is the newest check of the last hour: the worker checks every 30 s.
FRESHNESS_WITHIN_MS: Final = 3_600_000

Ident = Annotated[str | None, Query(pattern=IDENT)]

router = APIRouter()


@router.get("/api/readings")
def readings(
    spec: Spec, store: Store, identity: Viewer,
    start: datetime, end: datetime,
    facility: Ident = None, device: Ident = None,
    quantity: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    channel: Ident = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS_PER_SERIES)] = 10_000,
) -> dict[str, Any]:
    """Stored readings in [start, end), in canonical units, oldest first (of the
    account's facility only, for an account bound to one)."""
    start_ms, end_ms = checked_range(start, end, MAX_RANGE)
    facility = facility_scope(identity, facility)
    if quantity is not None and quantity not in QUANTITIES:
        raise HTTPException(422, f"unknown quantity {quantity!r}")
    tags = {"estate": spec.id}
    for name, value in (("facility", facility), ("device", device)):
        if value is not None:
            tags[name] = value
    span = TimeRange(start_ms, end_ms)
    fields = None
    if quantity is not None or channel is not None:
        fields = reading_fields(store.field_names(RAW_READINGS), quantity, channel)
    points = store.points(RAW_READINGS, span, fields=fields, where=Where(tags),
                          group_by=METER_TAGS, limit_per_group=limit)
    per_meter = Counter(tuple(p.tags.get(k, "") for k in METER_TAGS) for p in points)
    rows = [{"time_ms": r.time_ms, "facility": r.facility, "device": r.device,
             "quantity": r.quantity, "channel": r.channel, "value": r.value,
             "unit": QUANTITIES[r.quantity].unit if r.quantity in QUANTITIES else ""}
            for r in readings_from_points(points)]
    return {"estate": spec.id, "count": len(rows),
            "truncated": any(n >= limit for n in per_meter.values()), "readings": rows}


@router.get("/api/freshness")
def freshness(spec: Spec, store: Store, identity: Viewer) -> dict[str, Any]:
    """The scheduler's latest check of which meters stopped reporting (for an account
    bound to a facility, that facility's meters only)."""
    scope = facility_scope(identity, None)
    now_ms = time.time_ns() // 1_000_000
    newest = store.newest_points(SeriesRef(FRESHNESS), TimeRange(now_ms - FRESHNESS_WITHIN_MS),
                                 fields=["stale", "expected", "stale_devices"],
                                 where=Where({"estate": spec.id}))
    if not newest:
        return {"checked_ms": None, "expected": None, "stale": []}
    stale_text = str(newest[0].fields.get("stale_devices") or "")
    return {"checked_ms": newest[0].time_ms, "expected": newest[0].fields.get("expected"),
            "stale": [s for s in stale_text.split(",")
                      if s and (scope is None or s.split("/")[0] == scope)]}
