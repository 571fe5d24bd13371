"""schemathesis against the web view's own OpenAPI description, logged in as an admin
with a session cookie and its CSRF token: whatever it generates, within the schema or
not, no answer is a 5xx and every answer the schema describes matches it.

The app is served by uvicorn on a real port, on a real SQLite registry with the sample
estate, the in-memory store and messaging doubles (tests/doubles.py). Two routes are left
out: the live stream never ends, and logging out would end the session the run uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from dispatch.settings import WebSettings
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from tests.conftest import served
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import web_room
from tests.doubles import InMemoryTimeSeriesStore
from tests.web_login import logged_in

pytestmark = pytest.mark.servers

# The description does not depend on the connections: taken from an app built with none.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(WebContext(SPEC, InMemoryTimeSeriesStore(), LiveState(SPEC.id))).openapi()
).exclude(path="/api/live/stream").exclude(method="DELETE", path="/api/session")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """The served view and the headers of an admin's session."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    with web_room(directory, WebSettings(allowed_hosts=["127.0.0.1"])) as room, \
            served(room.app) as url, logged_in(url, "root", "correct horse battery") as admin:
        cookie = admin.cookies.get("estate_session")
        headers = {"Cookie": f"estate_session={cookie}",
                   "X-CSRF-Token": admin.headers["X-CSRF-Token"], "Origin": url}
        yield url, headers


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_server_error_and_no_schema_violation(
        case: schemathesis.Case, session: tuple[str, dict[str, Any]]) -> None:
    url, headers = session
    case.call_and_validate(base_url=url, headers=headers,
                           checks=[not_a_server_error, response_schema_conformance])
