"""The view's health and the estate's layout (the pages are ``dispatch.web.pages``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import Context, Health, Spec
from dispatch.web.live_feed import Fanout
from estate.model import MEASURES
from estate.units import QUANTITIES

router = APIRouter()


@router.get("/api/health", responses={
    200: {"description": "the store answers and the live feed is connected"},
    503: {"description": "degraded: the same body, with what failed",
          "content": {"application/json": {"schema": {"type": "object"}}}}})
def health(context: Context, probe: Health, fanout: Fanout) -> JSONResponse:
    """200 when the store answers and the live feed is connected; 503 otherwise. With the
    supervisor's status configured, each supervised service's state too; the commands the
    broker refused (503 while it refuses them); the live streams open and dropped for
    falling behind."""
    ok, body = probe.report()
    if context.sender is not None:
        # A broker that refuses the view's commands (its ACL) leaves approvals without
        # effect: degraded until it takes a command again (docs/commands.md, section 10).
        body["commands"] = context.sender.refusals.report()
        if not body["commands"]["ok"]:
            ok, body["status"] = False, "degraded"
    return JSONResponse({"estate": context.spec.id} | body | {"live": fanout.report()},
                        status_code=200 if ok else 503)


@router.get("/api/estate")
def estate(spec: Spec, identity: Viewer) -> dict[str, Any]:
    """The estate's facilities and meters, with the quantities each meter reports (the
    account's facility only, for an account bound to one)."""
    scope = facility_scope(identity, None)
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
            for f in spec.facilities if scope is None or f.id == scope],
    }
