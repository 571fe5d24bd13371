"""The operators' web view: the application, its routers, the guards every request
passes, and the one place where our errors become HTTP answers.

``create_app`` is handed everything it needs by the composition root (``dispatch.__main__``)
as a ``WebContext``; routes reach it through ``dispatch.web.deps``. Nothing heavy happens
here, so tests can serve the app against real servers on any port, or call it in process.

Every route but ``auth.PUBLIC_ROUTES`` needs a logged-in user of some role, and
``create_app`` refuses to build an app with a route that does not ask for one.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from dispatch.alarms.lifecycle import AlarmStateError
from dispatch.incidents.model import IncidentStateError
from dispatch.incidents.shiftlog import ShiftLogError
from dispatch.jobs.metered import RollupMeterData
from dispatch.registry.outbox import RecordNotFound
from dispatch.web import (
    alarm_routes,
    api_docs,
    command_routes,
    dr_orders,
    dr_statements,
    facility_view,
    forecast_view,
    history,
    incident_routes,
    live_feed,
    login,
    overview,
    overview_api,
    pages,
    plans,
    shift_routes,
    trend,
    users,
    webhook_routes,
)
from dispatch.web.auth import PUBLIC_ROUTES, Guards
from dispatch.web.deps import WebContext
from dispatch.web.guards import BodyLimit, OriginCheck, SecurityHeaders
from dispatch.web.live_fanout import LiveFanout
from dispatch.web.service_status import HealthProbe
from estate.errors import (
    AccountConflict,
    AccountError,
    AccountNotFound,
    BrokerError,
    DemandResponseError,
    PlanConflict,
    PlanNotFound,
    RegistryError,
    StoreError,
)

# Our errors as HTTP answers: the store, the registry and the broker being away is 503
# (retry later); a plan, account or order that is not there is 404; one that cannot move so is
# 409, as is an alarm, incident or shift-log step its state refuses; an account change, an
# order, an opt or a month refused for its content is 422.
# The first match wins.
ERROR_STATUS: dict[type[Exception], tuple[int, str]] = {
    StoreError: (503, "the time-series store is unavailable: "),
    RegistryError: (503, ""),
    BrokerError: (503, ""),
    PlanNotFound: (404, ""),
    PlanConflict: (409, ""),
    AccountNotFound: (404, ""),
    AccountConflict: (409, ""),
    AccountError: (422, ""),
    RecordNotFound: (404, ""),
    AlarmStateError: (409, ""),
    IncidentStateError: (409, ""),
    ShiftLogError: (409, ""),
    DemandResponseError: (422, ""),
}


class Problem(BaseModel):
    """One thing wrong with a request: where, and what."""

    loc: list[str | int]
    msg: str
    type: str


class Refusal(BaseModel):
    """Every 4xx and 5xx answer: the reason in words, or the problems of a request the
    schema refused (422)."""

    detail: str | list[Problem]


# Documented for every route, so clients (and the schema tests) know a refusal's shape.
REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": Refusal, "description": description} for status, description in (
        (401, "not logged in"), (403, "not allowed: role, facility, Origin or CSRF token"),
        (404, "not found"), (409, "conflict with the current state"),
        (413, "request body too large"), (422, "refused, with the reason"),
        (429, "too many attempts or streams"), (503, "a server behind the view is away"))}
# What a validation error repeats of each problem: its place and message, never the input.
_MSG_CHARS: Final = 200
_MAX_PROBLEMS: Final = 20


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    for kind, (status, prefix) in ERROR_STATUS.items():
        if isinstance(exc, kind):
            return JSONResponse({"detail": f"{prefix}{exc}"}, status_code=status)
    raise exc


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and what, bounded, without echoing what was sent."""
    assert isinstance(exc, RequestValidationError)
    problems = [{"loc": [str(p)[:64] for p in e.get("loc", ())][:8],
                 "msg": str(e.get("msg", ""))[:_MSG_CHARS], "type": str(e.get("type", ""))}
                for e in exc.errors()[:_MAX_PROBLEMS]]
    return JSONResponse({"detail": problems}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """As FastAPI answers an ``HTTPException``; but a browser that is not logged in and
    asks for a page gets a 401 page that leads to the login."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            '<!doctype html><meta http-equiv="refresh" content="0; url=/login">'
            '<title>Log in</title><a href="/login">Log in</a>', status_code=401,
            headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                        headers=exc.headers)


def _asks_for_a_role(dependant: Dependant) -> bool:
    for sub in dependant.dependencies:
        name = getattr(sub.call, "__name__", "")
        if name.startswith("require_") or _asks_for_a_role(sub):
            return True
    return False


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every route of ``app``, those of its routers included."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            found += [(m, context.path, route) for m in sorted(context.methods or ())]
    return found


def unguarded_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route that asks for no role and is not public."""
    return [(m, path) for m, path, route in api_routes(app)
            if not _asks_for_a_role(route.dependant) and (m, path) not in PUBLIC_ROUTES]


def create_app(context: WebContext) -> FastAPI:
    """The web application of ``context``'s estate."""
    app = FastAPI(title="Estate Dispatch", version="0.1.0",
                  description="Control-room API of an industrial estate",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context
    app.state.guards = Guards(context.web)
    app.state.metered = RollupMeterData(context.store, context.rollups)
    app.state.overview = overview_api.OverviewSource(context)
    app.state.fanout = LiveFanout(context.live)
    app.state.health = HealthProbe(context.store, context.mqtt_connected,
                                   context.supervisor_status)
    app.mount("/static", StaticFiles(directory=str(files("dispatch.web") / "static")),
              name="static")
    for router in (login.router, pages.router, overview.router, overview_api.router,
                   live_feed.router, history.router, trend.router, forecast_view.router,
                   plans.router, command_routes.router, facility_view.router, users.router,
                   dr_orders.router, dr_statements.router, webhook_routes.router,
                   alarm_routes.router, incident_routes.router, shift_routes.router,
                   api_docs.router):
        app.include_router(router, responses=REFUSALS)
    for kind in ERROR_STATUS:
        app.add_exception_handler(kind, _answer)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    unguarded = unguarded_routes(app)
    if unguarded:
        raise RuntimeError(f"routes without a role check: {unguarded}")
    _add_guards(app, context)
    return app


def _add_guards(app: FastAPI, context: WebContext) -> None:
    """The outermost is added last: headers on every answer, then the host, the origin of
    a state change, the body's size."""
    settings = context.web
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(OriginCheck, allowed_origins=settings.allowed_origins)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders)

