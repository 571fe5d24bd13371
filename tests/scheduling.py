"""How the suite shares its workers (pytest-xdist, ``--dist loadgroup`` in pyproject's
addopts): each test goes to whichever worker is free, and every worker starts its own
servers (the session fixtures of ``tests/conftest.py``) on free loopback ports, with its own
temporary directories. Two exceptions keep work from being done twice:

- a test that uses a module-scoped fixture runs on the same worker as the rest of its
  module, so the fixture (a browser, a served view, a whole stack) is made once;
- a test that uses one of ``MADE_ONCE``'s session fixtures runs on the same worker as every
  other user of it.

Tests marked ``slow`` (minutes of real time: simulated faults, a month of history) are
started first, so that they overlap the rest instead of ending the run alone.
"""

from __future__ import annotations

import pytest

# Session fixtures that take seconds to make (the demo's hours of history, its
# plan and its commands): their users share a worker.
MADE_ONCE = frozenset({"demo_data", "simulated_history"})


def group(item: pytest.Item) -> str | None:
    """The name of the work unit ``item`` must share a worker with, or None if it may go
    anywhere."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    names = set(info.name2fixturedefs)
    shared = sorted(MADE_ONCE & names)
    if shared:
        return shared[0]
    if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
        return item.nodeid.split("::", 1)[0]
    return None


def schedule(items: list[pytest.Item]) -> None:
    """Group the items that must share a worker and put the slow ones first (in place)."""
    for item in items:
        name = group(item)
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(name))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def lost_groups(config: pytest.Config, items: list[pytest.Item]) -> str | None:
    """In a worker of ``--dist loadgroup``: why the run must fail, if pytest-xdist did not
    put its group into the id of each grouped test (it sends tests to workers by that
    id). A pytest that keeps ids where xdist cannot write them would otherwise have every
    group ignored without a word, and each module fixture made again on every worker."""
    if not getattr(config.option, "loadgroup", False):
        return None
    lost = [item.nodeid for item in items
            if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid]
    if not lost:
        return None
    return (f"pytest-xdist did not group {len(lost)} tests (first: {lost[0]}): this pytest "
            "and this pytest-xdist do not work together; see pyproject.toml's pins")
