"""The pages of the operators' view and the layout they share.

Every page is a static HTML file of ``static/`` that loads ``layout.js``; the layout asks
``GET /api/layout`` for the estate (its name and time zone), the user and the navigation
this user may follow. A page is one entry of ``PAGES``: its path, its file, its title in
the navigation, the role it needs and whether it is the whole estate's (refused, and left
out of the navigation, for an account bound to one facility). A page whose file is not
there is not served and not offered, so a page is added by adding its file and its entry.

This module deliberately does not use ``from __future__ import annotations``: each page's
route is made in a closure, and FastAPI reads its parameters' annotations at once.
"""

import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse

from dispatch.accounts.roles import Role
from dispatch.registry.account_desk import Identity
from dispatch.web.auth import Viewer, facility_scope, require, whole_estate
from dispatch.web.deps import Context, Spec
from dispatch.web.overview_api import feed_state


@dataclass(frozen=True, slots=True)
class Page:
    path: str
    file: str
    title: str
    role: Role = Role.VIEWER
    whole_estate: bool = False
    in_nav: bool = True


# In the navigation's order.
PAGES: Final = (
    Page("/", "index.html", "Overview"),
    Page("/plans", "plans.html", "Plans", whole_estate=True),
    Page("/commands", "commands.html", "Commands", whole_estate=True),
    Page("/alarms", "alarms.html", "Alarms"),
    Page("/incidents", "incidents.html", "Incidents"),
    Page("/shift", "shift.html", "Shift"),
    Page("/dr", "dr.html", "Demand response"),
    Page("/webhooks", "webhooks.html", "Webhooks", role=Role.ADMIN),
)
FACILITY_PAGE: Final = "facility.html"


def _static(name: str) -> str:
    return (files("dispatch.web") / "static" / name).read_text(encoding="utf-8")


def served(page: Page) -> bool:
    """Whether the page's file is there."""
    return (files("dispatch.web") / "static" / page.file).is_file()


def may_open(identity: Identity, page: Page) -> bool:
    """Whether ``identity`` may open ``page`` (the navigation offers only these)."""
    return identity.user.role >= page.role and not (
        page.whole_estate and identity.user.facility is not None)


def _route(page: Page) -> Any:
    guard = require(page.role)

    def serve(identity: Annotated[Identity, Depends(guard)]) -> HTMLResponse:
        if page.whole_estate:
            whole_estate(identity, f"the {page.title.lower()} page's contents")
        return HTMLResponse(_static(page.file))

    serve.__name__ = f"page_{page.file.removesuffix('.html')}"
    serve.__doc__ = f"The {page.title} page."
    return serve


router = APIRouter()
for _page in PAGES:
    if served(_page):
        router.add_api_route(_page.path, _route(_page), methods=["GET"],
                             response_class=HTMLResponse, include_in_schema=False)


@router.get("/facility/{facility_id}", response_class=HTMLResponse, include_in_schema=False)
def facility_page(facility_id: str, spec: Spec, identity: Viewer) -> HTMLResponse:
    """One facility: live values, the 24 h trend, forecast against actual and plan."""
    if facility_id not in {f.id for f in spec.facilities}:
        raise HTTPException(404, f"no facility {facility_id[:64]!r} in this estate")
    facility_scope(identity, facility_id)
    return HTMLResponse(_static(FACILITY_PAGE))


@router.get("/api/layout", tags=["session"])
def layout(spec: Spec, identity: Viewer) -> dict[str, Any]:
    """What every page's header shows: the estate (its name and the time zone every time
    is shown in), the user and role, the session's CSRF token (null for an API token) and
    the pages this user may open, in the navigation's order."""
    return {"estate": {"id": spec.id, "name": spec.name, "timezone": spec.timezone},
            "user": identity.user.as_dict(), "csrf_token": identity.csrf_token,
            "pages": [{"path": p.path, "title": p.title} for p in PAGES
                      if p.in_nav and served(p) and may_open(identity, p)]}


@router.get("/api/feed", tags=["session"])
def feed(context: Context, _: Viewer) -> dict[str, Any]:
    """The live feed as every page's status strip shows it: ``connected`` to the broker,
    ``age_s`` since it last brought a message of the estate (null: none yet), ``stale``
    when disconnected, never fed, or older than the stale time (as ``GET /api/overview``'s
    ``feed``)."""
    return feed_state(context, time.time())
