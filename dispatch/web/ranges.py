"""A time range asked for in a query, checked before any store sees it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from fastapi import HTTPException

# The store keeps nanosecond times in 64 bits (InfluxDB: 1677-09-21 to 2262-04-11), and
# nothing of ours is older than the Unix epoch: outside these years a range is refused
# with its reason instead of overflowing in an adapter.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


def checked_range(start: datetime, end: datetime, longest: timedelta) -> tuple[int, int]:
    """``[start, end)`` in epoch milliseconds, or 422 with the reason."""
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "start and end need a time zone (e.g. 2026-11-26T10:00Z)")
    try:
        outside = not (EARLIEST <= start <= LATEST and EARLIEST <= end <= LATEST)
    except OverflowError:
        outside = True
    if outside:
        raise HTTPException(422, f"start and end must lie between {EARLIEST.year} and "
                                 f"{LATEST.year}")
    if end <= start:
        raise HTTPException(422, "end must be after start")
    if end - start > longest:
        raise HTTPException(422, f"at most {longest.days} days per request")
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)
