"""Backoff: doubling with jitter up to the cap, Retry-After honoured within its bound, and
no next try after the last."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from dispatch.settings import WebhookSettings
from dispatch.webhooks.backoff import next_delay_s, retry_after_s

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
S = WebhookSettings()


def test_doubling_with_jitter_to_the_cap_then_the_end() -> None:
    rng = random.Random(1)
    delays = [next_delay_s(n, S, rng=rng) for n in range(1, S.max_attempts + 1)]
    assert delays[-1] is None
    waits = [d for d in delays if d is not None]
    for n, wait in enumerate(waits, start=1):
        base = min(5.0 * 2 ** (n - 1), 3600.0)
        assert base * 0.8 <= wait <= base * 1.2
    assert 6 * 3600 < sum(waits) < 12 * 3600  # "over hours"
    assert len({round(next_delay_s(3, S) or 0, 6) for _ in range(20)}) > 1  # jittered


def test_retry_after_is_honoured_up_to_its_bound() -> None:
    assert (next_delay_s(1, S, retry_after=120.0) or 0) == 120.0
    assert (next_delay_s(1, S, retry_after=10 * 86400.0) or 0) == S.max_retry_after_s
    assert (next_delay_s(5, S, retry_after=1.0) or 0) >= 80 * 0.8  # never sooner
    assert next_delay_s(S.max_attempts, S, retry_after=1.0) is None


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("30", NOW) == 30.0
    assert retry_after_s(format_datetime(NOW + timedelta(minutes=2), usegmt=True),
                         NOW) == 120.0
    assert retry_after_s(format_datetime(NOW - timedelta(minutes=2), usegmt=True), NOW) == 0
    assert retry_after_s("soon", NOW) is None
    assert retry_after_s(None, NOW) is None
