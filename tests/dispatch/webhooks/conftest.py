"""Fixtures of the webhook tests: a registry with the sample estate, a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatch.registry.db import Registry
from tests.dispatch.registries import sample_registry
from tests.dispatch.webhooks.receiver import Receiver


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    r = sample_registry(tmp_path)
    yield r
    r.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()
