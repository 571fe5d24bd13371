"""The operators' web view: live values from MQTT, history from the store, estate layout.

``create_app`` is handed everything it needs by the composition root (``dispatch.__main__``);
the app builds nothing heavy itself, so tests can serve it against real servers on any port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles

from dispatch.jobs.freshness import FRESHNESS
from dispatch.web.live import LiveState
from estate.errors import StoreError
from estate.model import MEASURES, EstateSpec
from estate.ports import SeriesRef, TimeRange, TimeSeriesStore, Where
from estate.stored import METER_TAGS, RAW_READINGS, reading_fields, readings_from_points
from estate.topics import IDENTIFIER_PATTERN
from estate.units import QUANTITIES

log = logging.getLogger(__name__)

IDENT = f"^{IDENTIFIER_PATTERN}$"
# One query answers at most this many rows per series: a month of 1-minute data.
MAX_ROWS_PER_SERIES = 50_000
MAX_RANGE = timedelta(days=31)
# The live stream pushes changes at most this often; meters report every few seconds.
STREAM_PERIOD_S = 1.0
# The freshness answer is the newest check of the last hour: the worker checks every 30 s.
HOUR_MS = 3_600_000

Ident = Annotated[str | None, Query(pattern=IDENT)]


def create_app(spec: EstateSpec, store: TimeSeriesStore, live: LiveState,
               mqtt_connected: Any = None) -> FastAPI:
    """The web application; ``mqtt_connected`` is a callable telling the live feed's state."""
    app = FastAPI(title="Estate Dispatch", version="0.1.0",
                  description="Control-room API of an industrial estate")
    static = files("dispatch.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    @app.get("/api/health")
    def health() -> JSONResponse:
        """200 when the store answers and the live feed is connected; 503 otherwise."""
        body: dict[str, Any] = {"estate": spec.id}
        ok = True
        try:
            body["influxdb"] = {"ok": True, "version": store.ping()}
        except StoreError as exc:
            body["influxdb"] = {"ok": False, "error": str(exc)}
            ok = False
        connected = bool(mqtt_connected()) if mqtt_connected else False
        body["mqtt"] = {"ok": connected}
        ok = ok and connected
        body["status"] = "ok" if ok else "degraded"
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/api/estate")
    def estate() -> dict[str, Any]:
        """The estate's facilities and meters, with the quantities each meter reports."""
        return {
            "id": spec.id, "name": spec.name, "timezone": spec.timezone,
            "contracted_capacity_kw": spec.contracted_capacity_kw,
            "facilities": [
                {"id": f.id, "name": f.name, "sector": f.sector,
                 "meters": [{"id": m.id, "name": m.name, "kind": m.kind,
                             "measures": [{"quantity": q, "channel": c,
                                           "unit": QUANTITIES[q].unit,
                                           "label": QUANTITIES[q].label}
                                          for q, c in MEASURES[m.kind]]}
                            for m in f.meters]}
                for f in spec.facilities],
        }

    @app.get("/api/live")
    def live_snapshot() -> dict[str, Any]:
        """The latest value of every meter quantity and every device's status."""
        return live.snapshot()

    @app.get("/api/live/stream", response_class=EventSourceResponse)
    async def live_stream() -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: the full state first, then what changed, once a second."""
        seen = 0
        while True:
            if live.version != seen or seen == 0:
                snapshot = live.snapshot(seen)
                seen = snapshot["version"]
                yield ServerSentEvent(data=snapshot, event="live")
            await asyncio.sleep(STREAM_PERIOD_S)

    @app.get("/api/readings")
    def readings(
        start: datetime, end: datetime,
        facility: Ident = None, device: Ident = None,
        quantity: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
        channel: Ident = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ROWS_PER_SERIES)] = 10_000,
    ) -> dict[str, Any]:
        """Stored readings in [start, end), in canonical units, oldest first."""
        if start.tzinfo is None or end.tzinfo is None:
            raise HTTPException(422, "start and end need a time zone (e.g. 2026-11-26T10:00Z)")
        if end <= start:
            raise HTTPException(422, "end must be after start")
        if end - start > MAX_RANGE:
            raise HTTPException(422, f"at most {MAX_RANGE.days} days per request")
        if quantity is not None and quantity not in QUANTITIES:
            raise HTTPException(422, f"unknown quantity {quantity!r}")
        tags = {"estate": spec.id}
        for name, value in (("facility", facility), ("device", device)):
            if value is not None:
                tags[name] = value
        span = TimeRange(int(start.timestamp() * 1000), int(end.timestamp() * 1000))
        try:
            fields = None
            if quantity is not None or channel is not None:
                fields = reading_fields(store.field_names(RAW_READINGS), quantity, channel)
            points = store.points(RAW_READINGS, span, fields=fields, where=Where(tags),
                                  group_by=METER_TAGS, limit_per_group=limit)
        except StoreError as exc:
            raise HTTPException(503, f"the time-series store is unavailable: {exc}") from exc
        per_meter = Counter(tuple(p.tags.get(k, "") for k in METER_TAGS) for p in points)
        truncated = any(n >= limit for n in per_meter.values())
        rows = [{"time_ms": r.time_ms, "facility": r.facility, "device": r.device,
                 "quantity": r.quantity, "channel": r.channel, "value": r.value,
                 "unit": QUANTITIES[r.quantity].unit if r.quantity in QUANTITIES else ""}
                for r in readings_from_points(points)]
        return {"estate": spec.id, "count": len(rows), "truncated": truncated,
                "readings": rows}

    @app.get("/api/freshness")
    def freshness() -> dict[str, Any]:
        """The scheduler's latest check of which meters stopped reporting."""
        now_ms = time.time_ns() // 1_000_000
        try:
            newest = store.newest_points(SeriesRef(FRESHNESS), TimeRange(now_ms - HOUR_MS),
                                         fields=["stale", "expected", "stale_devices"],
                                         where=Where({"estate": spec.id}))
        except StoreError as exc:
            raise HTTPException(503, f"the time-series store is unavailable: {exc}") from exc
        if not newest:
            return {"checked_ms": None, "expected": None, "stale": []}
        stale_text = str(newest[0].fields.get("stale_devices") or "")
        return {"checked_ms": newest[0].time_ms, "expected": newest[0].fields.get("expected"),
                "stale": [s for s in stale_text.split(",") if s]}

    return app
