"""Who is asking, and may they: the session cookie or API token of a request, its CSRF
token on state changes, its role, and the facility it is bound to.

Every route takes one of ``Viewer``, ``Operator``, ``Supervisor`` or ``Admin``; only the
routes of ``PUBLIC_ROUTES`` take none (the app refuses to start otherwise, see
``dispatch.web.app``). A browser's session carries a CSRF token that every state change
must repeat in the ``X-CSRF-Token`` header; a machine's bearer token needs none (a browser
never sends one on its own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Final, cast

from fastapi import Depends, HTTPException, Request

from dispatch.accounts.credentials import same_secret
from dispatch.accounts.limits import Allowance, FailureLimiter, StreamSlots
from dispatch.accounts.roles import Role
from dispatch.registry.account_desk import Identity, session_identity, token_identity
from dispatch.settings import WebSettings
from dispatch.web.deps import RegistryDep
from dispatch.web.guards import SAFE_METHODS

SESSION_COOKIE: Final = "estate_session"
CSRF_HEADER: Final = "X-CSRF-Token"

# (method, path) of the routes anyone may call: the login page and the login itself, and
# what operations' probes need. Everything else answers 401 to an anonymous request.
PUBLIC_ROUTES: Final = frozenset({
    ("GET", "/login"), ("POST", "/api/session"), ("GET", "/api/health")})
# Mounted static files (the login page's script and style, and the page's): code, no data.
PUBLIC_MOUNTS: Final = frozenset({"/static"})


@dataclass
class Guards:
    """The web process's own limits (``dispatch.accounts.limits``)."""

    settings: WebSettings
    by_account: FailureLimiter = field(init=False)
    by_address: FailureLimiter = field(init=False)
    streams: StreamSlots = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.by_account = FailureLimiter(Allowance(s.login_failures_per_account,
                                                   s.login_window_s))
        self.by_address = FailureLimiter(Allowance(s.login_failures_per_address,
                                                   s.login_window_s))
        self.streams = StreamSlots(s.max_streams_per_session, s.max_streams)


def _guards(request: Request) -> Guards:
    return cast(Guards, request.app.state.guards)


GuardsDep = Annotated[Guards, Depends(_guards)]


def identify(request: Request, registry: RegistryDep) -> Identity | None:
    """The identity of the request's bearer token, else of its session cookie."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token_identity(registry, token.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    return session_identity(registry, cookie) if cookie else None


def require(role: Role) -> Callable[[Request, RegistryDep], Identity]:
    """A dependency that lets in a user of ``role`` or above, and checks the CSRF token
    of a session's state change."""

    def check(request: Request, registry: RegistryDep) -> Identity:
        identity = identify(request, registry)
        if identity is None:
            raise HTTPException(401, "log in first: a session (POST /api/session) or an "
                                     "API token (Authorization: Bearer)",
                                headers={"WWW-Authenticate": "Bearer"})
        if request.method not in SAFE_METHODS and identity.csrf_token is not None:
            given = request.headers.get(CSRF_HEADER, "")
            if not given or not same_secret(given, identity.csrf_token):
                raise HTTPException(403, f"missing or wrong CSRF token ({CSRF_HEADER} "
                                         "header, from GET /api/session)")
        if identity.user.role < role:
            raise HTTPException(403, f"this needs the {role.label} role "
                                     f"(you are {identity.user.role.label})")
        return identity

    check.__name__ = f"require_{role.label}"
    return check


Viewer = Annotated[Identity, Depends(require(Role.VIEWER))]
Operator = Annotated[Identity, Depends(require(Role.OPERATOR))]
Supervisor = Annotated[Identity, Depends(require(Role.SUPERVISOR))]
Admin = Annotated[Identity, Depends(require(Role.ADMIN))]


def facility_scope(identity: Identity, requested: str | None) -> str | None:
    """The facility a request may see: the one asked for, or for an account bound to a
    facility, that facility (another one is refused with 403)."""
    own = identity.user.facility
    if own is None:
        return requested
    if requested is not None and requested != own:
        raise HTTPException(403, f"this account sees facility {own!r} only")
    return own


def whole_estate(identity: Identity, what: str) -> None:
    """Refuse (403) an account bound to a facility: ``what`` is the estate's."""
    if identity.user.facility is not None:
        raise HTTPException(403, f"{what} concern the whole estate: not for an account "
                                 f"of facility {identity.user.facility!r}")


class StreamSlot:
    """A live stream's slot: the stream takes it when it starts and gives it back when it
    ends; one that never started gives it back with its request."""

    def __init__(self, identity: Identity, slots: StreamSlots) -> None:
        self.identity = identity
        self._slots = slots
        self._lock = threading.Lock()
        self._taken = False
        self._released = False

    def take(self) -> None:
        with self._lock:
            self._taken = True

    def release(self, *, unless_taken: bool = False) -> None:
        with self._lock:
            if self._released or (unless_taken and self._taken):
                return
            self._released = True
        self._slots.release(self.identity.key)


def stream_slot(identity: Viewer, guards: GuardsDep) -> Iterator[StreamSlot]:
    """One of the session's live-stream slots (429 if none is free). FastAPI ends this
    dependency once the stream has started, so the stream itself gives the slot back."""
    refused = guards.streams.acquire(identity.key)
    if refused is not None:
        raise HTTPException(429, refused)
    slot = StreamSlot(identity, guards.streams)
    try:
        yield slot
    finally:
        slot.release(unless_taken=True)


StreamViewer = Annotated[StreamSlot, Depends(stream_slot)]
