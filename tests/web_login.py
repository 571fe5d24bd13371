"""Users of the web view for tests that serve it: made in its registry, logged in through
its own login, sending the CSRF token and Origin as the page does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from playwright.sync_api import Page

from dispatch.accounts.roles import Role
from dispatch.registry.account_desk import add_user
from dispatch.registry.db import Registry

PASSWORD = "a test password"


def add_users(registry: Registry | str, **roles: Role) -> None:
    """Add each ``username=role`` with ``PASSWORD`` (a registry URL is opened and closed)."""
    opened = Registry(registry) if isinstance(registry, str) else registry
    try:
        for username, role in roles.items():
            add_user(opened, username, PASSWORD, role)
    finally:
        if isinstance(registry, str):
            opened.close()


@contextmanager
def logged_in(url: str, username: str, password: str = PASSWORD,
              timeout_s: float = 30) -> Iterator[httpx.Client]:
    """A client of the view at ``url`` with the user's session, closed at the end."""
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        answer = client.post("/api/session", json={"username": username,
                                                   "password": password})
        assert answer.status_code == 200, answer.text
        client.headers.update({"X-CSRF-Token": answer.json()["csrf_token"], "Origin": url})
        yield client


def log_in_page(page: Page, url: str, username: str = "ana",
                password: str = PASSWORD) -> None:
    """Through the login page in a browser, as an operator does; the page then opens."""
    page.goto(url)
    page.wait_for_url(f"{url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
