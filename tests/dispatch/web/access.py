"""The web view in process for fast tests: the real app on a real SQLite registry with the
sample estate, the in-memory store and messaging doubles (tests/doubles.py), and users of
every role logged in through the API itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from dispatch.accounts.roles import Role
from dispatch.control.sender import CommandSender
from dispatch.registry.account_desk import add_user
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.settings import WebhookSettings, WebSettings
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from tests.asgi import AppClient
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryMessaging, InMemoryTimeSeriesStore

HOST = "testserver"
ORIGIN = f"http://{HOST}"
PASSWORD = "correct horse battery"
# One user per role, and a tenant's viewer and operator bound to the first facility.
TENANT_FACILITY = SPEC.facilities[0].id
OTHER_FACILITY = SPEC.facilities[1].id
USERS: dict[str, tuple[Role, str | None]] = {
    "vera": (Role.VIEWER, None), "ana": (Role.OPERATOR, None),
    "sam": (Role.SUPERVISOR, None), "root": (Role.ADMIN, None),
    "tina": (Role.VIEWER, TENANT_FACILITY), "toni": (Role.OPERATOR, TENANT_FACILITY)}


@dataclass
class WebRoom:
    app: FastAPI
    registry: Registry
    store: InMemoryTimeSeriesStore
    live: LiveState
    messaging: InMemoryMessaging
    clients: list[AppClient] = field(default_factory=list)

    def client(self, **kwargs: Any) -> AppClient:
        made = AppClient(self.app, base_url=ORIGIN, **kwargs)
        self.clients.append(made)
        return made

    def login(self, username: str, password: str = PASSWORD) -> AppClient:
        """A client with the user's session cookie, sending its CSRF token and Origin as
        the page does."""
        client = self.client()
        answer = client.post("/api/session", json={"username": username,
                                                   "password": password})
        assert answer.status_code == 200, answer.text
        client.headers.update({"X-CSRF-Token": answer.json()["csrf_token"],
                               "Origin": ORIGIN})
        return client


@contextmanager
def web_room(tmp_path: Path, settings: WebSettings | None = None,
             webhooks: WebhookSettings | None = None) -> Iterator[WebRoom]:
    registry = sample_registry(tmp_path)
    for username, (role, facility) in USERS.items():
        add_user(registry, username, PASSWORD, role, facility)
    store = InMemoryTimeSeriesStore()
    live = LiveState(SPEC.id)
    messaging = InMemoryMessaging()
    sender = CommandSender(messaging, CommandStore(registry), estates=[SPEC.id],
                           actor="dispatch:test")
    sender.start()
    web = settings or WebSettings(allowed_hosts=[HOST])
    # The in-memory messaging is always connected: health answers 200.
    app = create_app(WebContext(SPEC, store, live, lambda: True, registry=registry,
                                sender=sender, web=web,
                                webhooks=webhooks or WebhookSettings()))
    room = WebRoom(app, registry, store, live, messaging)
    try:
        yield room
    finally:
        for client in room.clients:
            client.close()
        sender.close()
        registry.close()
