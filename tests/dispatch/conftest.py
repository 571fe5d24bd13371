"""Fixtures of the dispatch tests that several packages share."""

from __future__ import annotations

import pytest

from tests.dispatch.dr.flow import FAST_NOW, simulate_history
from tests.doubles import InMemoryTimeSeriesStore


@pytest.fixture(scope="session")
def simulated_history() -> InMemoryTimeSeriesStore:
    """The sample estate's simulated history up to ``FAST_NOW`` in the in-memory store,
    made once per worker (seconds of simulation); each user takes a ``copy()``. Its users
    share a worker (``tests/scheduling.py``)."""
    store = InMemoryTimeSeriesStore()
    simulate_history(store, FAST_NOW)
    return store
