"""The stored forecast as the capacity rules that look ahead read it: the forecast job's
series (``forecasts.load_forecast``) of the estate (``_estate``) or a facility, for the
alarm source that names it (``estate``, ``facility:<id>``), over the rule's horizon.

The windowed rules' job is handed ``capacity_forecasts`` by the composition root (the
control room sits below the planning room and cannot import it)."""

from __future__ import annotations

from collections.abc import Mapping

from dispatch.alarms.frames import Floats, Ints
from dispatch.alarms.model import ESTATE_SOURCE
from dispatch.planning.forecasts import ESTATE_SCOPE, load_forecast
from estate.model import EstateSpec
from estate.ports import TimeSeriesStore

_FACILITY = "facility:"


def scope_of(source: str) -> str | None:
    """The forecast's ``facility`` tag for an alarm source (None: not a capacity source)."""
    if source == ESTATE_SOURCE:
        return ESTATE_SCOPE
    return source[len(_FACILITY):] if source.startswith(_FACILITY) else None


def capacity_forecasts(store: TimeSeriesStore, spec: EstateSpec,
                       horizons: Mapping[str, float], end_ms: int,
                       ) -> dict[str, tuple[Ints, Floats]]:
    """Each source's stored forecast steps in ``[end_ms, end_ms + horizon)``; a source
    with none stored is left out (its rule stays quiet rather than guess)."""
    out: dict[str, tuple[Ints, Floats]] = {}
    for source, horizon_s in sorted(horizons.items()):
        scope = scope_of(source)
        if scope is None:
            continue
        stored = load_forecast(store, spec.id, scope, end_ms, end_ms + int(horizon_s * 1000))
        if stored.times_ms.size:
            out[source] = (stored.times_ms, stored.values_kw)
    return out
