"""The operators' web view: live values from MQTT, history from the store, estate layout.

``create_app`` is handed everything it needs by the composition root (``dispatch.__main__``);
the app builds nothing heavy itself, so tests can serve it against real servers on any port.
"""

from __future__ import annotations

import asyncio
import logging
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
from estate.ports import TimeSeriesStore
from estate.schema import READINGS, field_key
from estate.stored import readings_from_series
from estate.topics import IDENTIFIER_PATTERN
from estate.units import QUANTITIES

log = logging.getLogger(__name__)

IDENT = f"^{IDENTIFIER_PATTERN}$"
# One query answers at most this many rows per series: a month of 1-minute data.
MAX_ROWS_PER_SERIES = 50_000
MAX_RANGE = timedelta(days=31)
# The live stream pushes changes at most this often; meters report every few seconds.
STREAM_PERIOD_S = 1.0

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
        conditions = ['"estate" = $estate', "time >= $start", "time < $end"]
        params: dict[str, str | int] = {
            "estate": spec.id,
            "start": int(start.timestamp() * 1_000_000) * 1000,
            "end": int(end.timestamp() * 1_000_000) * 1000,
        }
        for name, value in (("facility", facility), ("device", device)):
            if value is not None:
                conditions.append(f'"{name}" = ${name}')
                params[name] = value
        try:
            series = store.query(
                f'SELECT {_reading_fields(quantity, channel)} FROM "{READINGS}" '
                f'WHERE {" AND ".join(conditions)} '
                f'GROUP BY "estate", "facility", "device" LIMIT {limit}', params)
        except StoreError as exc:
            raise HTTPException(503, f"the time-series store is unavailable: {exc}") from exc
        truncated = any(len(s.values) >= limit for s in series)
        rows = [{"time_ms": r.time_ms, "facility": r.facility, "device": r.device,
                 "quantity": r.quantity, "channel": r.channel, "value": r.value,
                 "unit": QUANTITIES[r.quantity].unit if r.quantity in QUANTITIES else ""}
                for r in readings_from_series(series)]
        return {"estate": spec.id, "count": len(rows), "truncated": truncated,
                "readings": rows}

    @app.get("/api/freshness")
    def freshness() -> dict[str, Any]:
        """The scheduler's latest check of which meters stopped reporting."""
        try:
            series = store.query(
                f'SELECT last("stale") AS "stale", "expected", "stale_devices" FROM '
                f'"{FRESHNESS}" WHERE "estate" = $estate AND time > now() - 1h',
                {"estate": spec.id})
        except StoreError as exc:
            raise HTTPException(503, f"the time-series store is unavailable: {exc}") from exc
        if not series or not series[0].values:
            return {"checked_ms": None, "expected": None, "stale": []}
        record = series[0].records()[0]
        stale_text = record.get("stale_devices") or ""
        return {"checked_ms": record["time"], "expected": record["expected"],
                "stale": [s for s in stale_text.split(",") if s]}

    return app


def _reading_fields(quantity: str | None, channel: str | None) -> str:
    """The fields of ``READINGS`` to select: one per quantity and channel, as a field key
    or an InfluxQL regular expression (both names were validated against their alphabets,
    so only the dot needs escaping)."""
    if quantity is not None and channel is not None:
        return f'"{field_key(quantity, channel)}"'
    if quantity is not None:
        return f"/^{quantity}(\\.|$)/"
    if channel is not None:
        return "/\\." + channel.replace(".", "\\.") + "$/"
    return "*"
