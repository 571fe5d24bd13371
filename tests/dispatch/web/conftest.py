from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch.registry.conftest import pg_url, postgres
from tests.dispatch.web.access import WebRoom, web_room

__all__ = ["pg_url", "postgres", "room"]


@pytest.fixture
def room(tmp_path: Path) -> Iterator[WebRoom]:
    with web_room(tmp_path) as made:
        yield made
