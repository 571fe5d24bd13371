"""The web view over a registry of either kind (an SQLite file, or a PostgreSQL database)
with the sample estate and the users of ``access.USERS``, and the control room fed by the
worker's own step: alarms raised by transitions, incidents opened by triage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from dispatch.alarms.model import AlarmTransition
from dispatch.registry.account_desk import add_user
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from dispatch.registry.room_step import CycleOutcome, RoomContext, control_room_step
from dispatch.settings import WebSettings
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import HOST, PASSWORD, USERS, WebRoom
from tests.doubles import InMemoryMessaging, InMemoryTimeSeriesStore

TENANT_METER = f"{SPEC.facilities[0].id}/{SPEC.facilities[0].meters[1].id}"
OTHER_METER = f"{SPEC.facilities[1].id}/{SPEC.facilities[1].meters[1].id}"


@contextmanager
def room_on(url: str, allowed_hosts: list[str] | None = None) -> Iterator[WebRoom]:
    """The view over the registry at ``url`` (migrated and loaded here)."""
    registry = Registry(url)
    registry.migrate()
    load_estate_into(registry, SPEC)
    for username, (role, facility) in USERS.items():
        add_user(registry, username, PASSWORD, role, facility)
    store = InMemoryTimeSeriesStore()
    live = LiveState(SPEC.id)
    app = create_app(WebContext(SPEC, store, live, lambda: True, registry=registry,
                                web=WebSettings(allowed_hosts=allowed_hosts or [HOST])))
    room = WebRoom(app, registry, store, live, InMemoryMessaging())
    try:
        yield room
    finally:
        for client in room.clients:
            client.close()
        registry.close()


def transition(action: str, source: str, rule: str, at: datetime, severity: str = "high",
               kind: str = "no_data") -> AlarmTransition:
    return AlarmTransition(action, source, rule, kind, severity, 1.0,  # type: ignore[arg-type]
                           f"{rule} {action} at {source}", int(at.timestamp() * 1000))


def step(registry: Registry, transitions: list[AlarmTransition],
         at: datetime | None = None) -> CycleOutcome:
    """One control-room step, as the worker takes it."""
    with registry.writing() as session:
        return control_room_step(session, RoomContext.of(SPEC), transitions,
                                 at or datetime.now(UTC))
