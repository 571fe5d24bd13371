"""``GET /api/overview``: the estate per utility, every facility's state, the import
against the contracted capacity, and the active alarms (``dispatch.web.utilities``).

A request reads the live values it needs under one lock, and the registry's active alarms
in one grouped query, kept for ``ALARMS_TTL_S`` however many screens ask.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, cast

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from dispatch.registry.alarm_counts import SourceAlarms, active_alarm_counts
from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import Context, WebContext
from dispatch.web.service_status import Cached
from dispatch.web.utilities import EstateOverview, LiveView

# A second: an alarm raised reaches the overview within a second (the control room's own
# step runs every second), and a hundred screens polling cost one query a second.
ALARMS_TTL_S: Final = 1.0

router = APIRouter()


class OverviewSource:
    """The overview's layout (worked out once) and its cached view of the alarms."""

    def __init__(self, context: WebContext, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.context = context
        self.overview = EstateOverview(context.spec)
        self._alarms = Cached(self._read_alarms, ALARMS_TTL_S, clock)

    def _read_alarms(self) -> dict[str, SourceAlarms]:
        if self.context.registry is None:
            return {}
        return active_alarm_counts(self.context.registry, self.context.spec.id)

    def alarms(self) -> dict[str, SourceAlarms]:
        return self._alarms.get()


def _source(request: Request) -> OverviewSource:
    return cast(OverviewSource, request.app.state.overview)


Source = Annotated[OverviewSource, Depends(_source)]


def feed_state(context: WebContext, now_s: float) -> dict[str, Any]:
    """The live feed: connected to the broker, and how long since it brought anything."""
    connected = bool(context.mqtt_connected())
    age = context.live.feed_age_s(now_s)
    return {"connected": connected, "age_s": None if age is None else round(age, 3),
            "stale": not connected or age is None or age > context.stale_after_s}


@router.get("/api/overview", response_class=Response, responses={
    200: {"content": {"application/json": {"schema": {"type": "object"}}},
          "description": "the estate per utility (docs/api.md)"}})
def overview(context: Context, source: Source, identity: Viewer) -> Response:
    """Per utility (electricity, water, gas): the estate's import at its network roots
    against the contracted capacity, and each facility's draw and state (``ok``,
    ``stale``, ``offline``, ``alarm``) with its active alarms. An account bound to a
    facility sees its facility only, without the estate's import and contract."""
    scope = facility_scope(identity, None)
    now_s = time.time()
    live = context.live
    view = LiveView(live.latest(source.overview.keys), live.statuses(), source.alarms(),
                    round(now_s * 1000), round(context.stale_after_s * 1000))
    spec = context.spec
    body = {"estate": spec.id, "name": spec.name, "timezone": spec.timezone,
            "at": datetime.fromtimestamp(now_s, UTC).isoformat(timespec="milliseconds"
                                                               ).replace("+00:00", "Z"),
            "feed": feed_state(context, now_s),
            "utilities": source.overview.utilities(view, scope)}
    # Encoded straight to JSON: a thousand facilities' rows through FastAPI's generic
    # encoder cost several times what building them does.
    return Response(orjson.dumps(body), media_type="application/json")
