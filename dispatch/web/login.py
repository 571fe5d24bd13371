"""Logging in and out: the login page, ``POST /api/session`` (a session cookie and its
CSRF token), ``GET /api/session`` (who am I, and the CSRF token again after a reload),
``DELETE /api/session`` (log out).

Failed logins are limited per account and per address (``WebSettings``); over the limit
the answer is 429 with ``Retry-After``, before any password is checked.
"""

from __future__ import annotations

import math
from datetime import timedelta
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts.roles import MAX_PASSWORD
from dispatch.registry.account_desk import check_login, close_session, open_session
from dispatch.web.auth import SESSION_COOKIE, GuardsDep, Viewer
from dispatch.web.deps import Context, RegistryDep

router = APIRouter(tags=["session"])


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page() -> str:
    return (files("dispatch.web") / "static" / "login.html").read_text(encoding="utf-8")


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post("/api/session")
def log_in(credentials: Credentials, request: Request, response: Response,
           context: Context, registry: RegistryDep, guards: GuardsDep) -> dict[str, Any]:
    """Log in: sets the session cookie (HttpOnly, SameSite=Strict) and answers the CSRF
    token that state changes must send in ``X-CSRF-Token``."""
    username = credentials.username.strip().lower()
    address = _address(request)
    wait_s = max(guards.by_account.retry_after(username),
                 guards.by_address.retry_after(address))
    if wait_s > 0:
        raise HTTPException(429, f"too many failed logins: try again in "
                                 f"{math.ceil(wait_s)} s",
                            headers={"Retry-After": str(math.ceil(wait_s))})
    user = check_login(registry, username, credentials.password)
    if user is None:
        guards.by_account.failed(username)
        guards.by_address.failed(address)
        raise HTTPException(401, "wrong username or password, or the account is disabled")
    guards.by_account.succeeded(username)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        close_session(registry, previous)  # a new login never reuses an old session
    settings = context.web
    grant = open_session(registry, user, timedelta(hours=settings.session_hours), address)
    response.set_cookie(SESSION_COOKIE, grant.token,
                        max_age=int(settings.session_hours * 3600), path="/",
                        httponly=True, samesite="strict", secure=settings.cookie_secure)
    return {"user": user.as_dict(), "csrf_token": grant.csrf_token,
            "expires_at": grant.expires_at.isoformat()}


@router.get("/api/session")
def who_am_i(identity: Viewer) -> dict[str, Any]:
    """The logged-in user, and the session's CSRF token (null for an API token)."""
    return {"user": identity.user.as_dict(), "csrf_token": identity.csrf_token}


@router.delete("/api/session")
def log_out(identity: Viewer, request: Request, response: Response,
            registry: RegistryDep) -> dict[str, Any]:
    """Log out: the session ends here and in the browser."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and identity.csrf_token is not None:
        close_session(registry, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"status": "logged out"}
