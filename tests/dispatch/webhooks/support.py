"""Helpers of the webhook tests: settings fast enough for tests (loopback allowed
explicitly), events raised as the control room raises them, waiting on a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from dispatch.alarms.model import AlarmTransition
from dispatch.registry.alarm_board import record_transitions
from dispatch.registry.db import Registry
from dispatch.settings import WebhookSettings
from tests.dispatch.registries import SPEC

FAST = WebhookSettings(allow_loopback=True, backoff_base_s=0.05, backoff_max_s=0.2,
                       connect_timeout_s=1.0, read_timeout_s=0.5, poll_s=0.02, claim_s=5.0,
                       max_attempts=100)


def raise_alarms(registry: Registry, first: int, count: int, *, facility: str = "F01",
                 severity: str = "high") -> None:
    """Raise ``count`` alarms (one ``alarm.raised`` event each), as the alarm board does."""
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    with registry.writing() as session:
        record_transitions(session, SPEC.id, [
            AlarmTransition("raise", f"{facility}/M{n}", "voltage-band", "band",
                            severity, 250.0 + n, f"alarm {n}", at_ms)  # type: ignore[arg-type]
            for n in range(first, first + count)])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             step: Callable[[], object] | None = None) -> None:
    """Until ``condition`` holds (running ``step`` meanwhile, if given), or fail."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.02)
