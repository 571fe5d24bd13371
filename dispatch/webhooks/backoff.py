"""When a failed delivery is tried again: exponential backoff with jitter, a receiver's
``Retry-After`` honoured (up to a bound), and no next try after the last one."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from dispatch.settings import WebhookSettings


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()[:64]
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_delay_s(attempts: int, settings: WebhookSettings, retry_after: float | None = None,
                 rng: random.Random | None = None) -> float | None:
    """The wait before the next try after ``attempts`` tries, or None after the last."""
    if attempts >= settings.max_attempts:
        return None
    base = min(settings.backoff_base_s * 2.0 ** (attempts - 1), settings.backoff_max_s)
    spread = (rng or random).uniform(-settings.jitter, settings.jitter)
    delay = base * (1.0 + spread)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.max_retry_after_s))
    return delay
