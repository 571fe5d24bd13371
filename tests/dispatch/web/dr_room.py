"""The web view of a demand-response estate (``tests.dispatch.dr.flow.prepared``) in
process, with users of each role and a tenant's viewer and operator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from dispatch.accounts.roles import Role
from dispatch.registry.account_desk import add_user
from dispatch.registry.db import Registry
from dispatch.settings import WebSettings
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from estate.model import EstateSpec
from tests.asgi import AppClient
from tests.dispatch.dr.flow import FAST_NOW, METHOD, Estate
from tests.dispatch.web.access import HOST, ORIGIN, PASSWORD

NOW = FAST_NOW
TENANT = "textile"
OTHER = "metal"
USERS: dict[str, tuple[Role, str | None]] = {
    "vera": (Role.VIEWER, None), "ana": (Role.OPERATOR, None),
    "sam": (Role.SUPERVISOR, None), "tina": (Role.VIEWER, TENANT),
    "toni": (Role.OPERATOR, TENANT)}


@dataclass
class DrRoom:
    app: FastAPI
    registry: Registry
    spec: EstateSpec
    tenant: str = TENANT
    other: str = OTHER
    clients: list[AppClient] = field(default_factory=list)

    def client(self, **kwargs: Any) -> AppClient:
        made = AppClient(self.app, base_url=ORIGIN, **kwargs)
        self.clients.append(made)
        return made

    def login(self, username: str) -> AppClient:
        client = self.client()
        answer = client.post("/api/session", json={"username": username,
                                                   "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers.update({"X-CSRF-Token": answer.json()["csrf_token"],
                               "Origin": ORIGIN})
        return client


@contextmanager
def dr_room(estate: Estate, allowed_hosts: list[str] | None = None) -> Iterator[DrRoom]:
    for username, (role, facility) in USERS.items():
        add_user(estate.registry, username, PASSWORD, role, facility)
    app = create_app(WebContext(estate.spec, estate.store, LiveState(estate.spec.id),
                                lambda: True, registry=estate.registry,
                                web=WebSettings(allowed_hosts=allowed_hosts or [HOST]),
                                baseline=METHOD))
    room = DrRoom(app, estate.registry, estate.spec)
    try:
        yield room
    finally:
        for client in room.clients:
            client.close()
        estate.registry.close()
