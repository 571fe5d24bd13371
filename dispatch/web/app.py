"""The operators' web view: the application, its routers and the one place where our
errors become HTTP answers.

``create_app`` is handed everything it needs by the composition root (``dispatch.__main__``)
as a ``WebContext``; routes reach it through ``dispatch.web.deps``. Nothing heavy happens
here, so tests can serve the app against real servers on any port, or call it in process.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from dispatch.web import forecast_view, history, live_feed, overview, plans
from dispatch.web.deps import WebContext
from dispatch.web.service_status import HealthProbe
from estate.errors import BrokerError, PlanConflict, PlanNotFound, RegistryError, StoreError

# Our errors as HTTP answers: the store, the registry and the broker being away is 503
# (retry later); a plan that is not there is 404; one that cannot move so is 409.
ERROR_STATUS: dict[type[Exception], tuple[int, str]] = {
    StoreError: (503, "the time-series store is unavailable: "),
    RegistryError: (503, ""),
    BrokerError: (503, ""),
    PlanNotFound: (404, ""),
    PlanConflict: (409, ""),
}


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    for kind, (status, prefix) in ERROR_STATUS.items():
        if isinstance(exc, kind):
            return JSONResponse({"detail": f"{prefix}{exc}"}, status_code=status)
    raise exc


def create_app(context: WebContext) -> FastAPI:
    """The web application of ``context``'s estate."""
    app = FastAPI(title="Estate Dispatch", version="0.1.0",
                  description="Control-room API of an industrial estate")
    app.state.context = context
    app.state.health = HealthProbe(context.store, context.mqtt_connected,
                                   context.supervisor_status)
    app.mount("/static", StaticFiles(directory=str(files("dispatch.web") / "static")),
              name="static")
    for router in (overview.router, live_feed.router, history.router, forecast_view.router,
                   plans.router):
        app.include_router(router)
    for kind in ERROR_STATUS:
        app.add_exception_handler(kind, _answer)
    return app
