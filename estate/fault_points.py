"""Named points where a fault test stops or kills its own process, so a crash or a pause
lands exactly where the test needs it (after an approval's commit, between a solve and
saving its plan) instead of wherever a signal from outside happens to find the process.

Off unless the environment names a point: ``ESTATE_FAULT_POINT=approval-committed:kill``
(SIGKILL at that point) or ``plan-solved:stop`` (SIGSTOP: the process stays paused until
someone sends SIGCONT), the first time the process reaches it. Only the fault tests set
it; docs/operations.md lists the points.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Final

log = logging.getLogger(__name__)

ENV: Final = "ESTATE_FAULT_POINT"
POINTS: Final = ("approval-committed", "plan-solved")
_ACTIONS: Final = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}
_held_while_stopped: list[Callable[[], AbstractContextManager[object]]] = []
_fired: set[str] = set()


def hold_while_stopped(hold: Callable[[], AbstractContextManager[object]]) -> None:
    """Hold ``hold()`` while the process stops itself: the registry registers its write lock,
    so a process stops between writes, as a long solve would be paused, and never inside
    one (where, on SQLite, it would hold every other process's writes up until resumed)."""
    _held_while_stopped.append(hold)


def fault_point(name: str) -> None:
    """Kill or stop this process here if the environment asks for ``name``."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    wanted = os.environ.get(ENV, "")
    point, _, action = wanted.partition(":")
    if point != name or action not in _ACTIONS or name in _fired:
        return
    _fired.add(name)  # once per process: a job that runs again carries on
    log.warning("fault point %s: %s", name, action)
    with ExitStack() as held:
        if action == "stop":
            for hold in _held_while_stopped:
                held.enter_context(hold())
        os.kill(os.getpid(), _ACTIONS[action])
