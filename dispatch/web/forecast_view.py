"""``GET /api/forecast``: a facility's (or the estate's) load forecast beside what was
measured, per quarter-hour, for the web view's forecast-versus-actual chart."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query

from dispatch.planning.demand_model import STEP_MS
from dispatch.planning.forecasts import ESTATE_SCOPE, load_forecast, read_demand
from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import Spec, Store
from dispatch.web.ranges import checked_range
from estate.topics import IDENTIFIER_PATTERN

MAX_RANGE: Final = timedelta(days=8)
# The newest quarter-hours are not rolled up yet: the measured side reads them raw, at
# most this far back (the same shortcut the forecast job takes).
RAW_FALLBACK_MS: Final = 6 * 3_600_000

router = APIRouter()


@router.get("/api/forecast")
def forecast(
    spec: Spec, store: Store, identity: Viewer, start: datetime, end: datetime,
    facility: Annotated[str, Query(pattern=f"^({IDENTIFIER_PATTERN}|{ESTATE_SCOPE})$")]
    = ESTATE_SCOPE,
) -> dict[str, Any]:
    """Forecast and measured demand (kW) per quarter-hour in ``[start, end)``; an account
    bound to a facility sees its facility's only (the default for it)."""
    first_ms, last_ms = checked_range(start, end, MAX_RANGE)
    if identity.user.facility is not None:
        facility = facility_scope(identity, None if facility == ESTATE_SCOPE else facility
                                  ) or facility
    if facility != ESTATE_SCOPE and facility not in {f.id for f in spec.facilities}:
        raise HTTPException(404, f"no facility {facility!r} in estate {spec.id!r}")
    start_ms = first_ms // STEP_MS * STEP_MS
    end_ms = -(-last_ms // STEP_MS) * STEP_MS
    stored = load_forecast(store, spec.id, facility, start_ms, end_ms)
    measured = read_demand(store, spec, start_ms, end_ms, raw_fallback_ms=RAW_FALLBACK_MS)
    actual = measured.estate if facility == ESTATE_SCOPE else measured.facilities.get(facility)
    actual_at = ({} if actual is None else
                 {int(t): float(v) for t, v in zip(measured.times_ms.tolist(), actual.tolist(),
                                                   strict=True)
                  if math.isfinite(v)})
    predicted = {int(t): (float(v), int(i), m) for t, v, i, m in zip(
        stored.times_ms.tolist(), stored.values_kw.tolist(), stored.issued_ms.tolist(),
        stored.methods, strict=True)}
    steps = []
    for t in range(start_ms, end_ms, STEP_MS):
        value, issued, method = predicted.get(t, (None, None, None))
        steps.append({"time_ms": t, "forecast_kw": value, "actual_kw": actual_at.get(t),
                      "method": method, "issued_ms": issued})
    return {"estate": spec.id, "facility": facility, "step_minutes": STEP_MS // 60_000,
            "steps": steps}
