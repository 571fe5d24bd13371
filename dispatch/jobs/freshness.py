"""Which meters have stopped reporting (a deadman check), from what the store holds."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from estate.lineprotocol import line
from estate.ports import TimeRange, TimeSeriesStore, Where
from estate.stored import RAW_READINGS
from estate.topics import DeviceId

log = logging.getLogger(__name__)

FRESHNESS: Final = "freshness_check"
"""The measurement of check results: how many meters were expected, which were stale."""


@dataclass(frozen=True, slots=True)
class FreshnessResult:
    checked_ms: int
    expected: int
    stale: list[DeviceId]
    last_seen_ms: dict[tuple[str, str], int]


def find_stale(expected: list[DeviceId], last_seen_ms: dict[tuple[str, str], int], now_ms: int,
               stale_after_ms: int) -> list[DeviceId]:
    """The expected devices whose last reading is older than ``stale_after_ms`` (or absent)."""
    return [d for d in expected
            if now_ms - last_seen_ms.get((d.facility, d.device), -(2**62)) > stale_after_ms]


def check_freshness(store: TimeSeriesStore, estate: str, expected: list[DeviceId],
                    stale_after_s: float, lookback_h: int = 24) -> FreshnessResult:
    """Query the last reading time per meter, find the stale ones and record the result."""
    now_ms = time.time_ns() // 1_000_000
    # The newest point of each meter, whatever it measured.
    newest = store.newest_points(RAW_READINGS, TimeRange(now_ms - lookback_h * 3_600_000),
                                 where=Where({"estate": estate}),
                                 group_by=("facility", "device"))
    last_seen = {(p.tags.get("facility", ""), p.tags.get("device", "")): p.time_ms
                 for p in newest}
    stale = find_stale(expected, last_seen, now_ms, round(stale_after_s * 1000))
    store.write_lines([line(
        FRESHNESS, {"estate": estate},
        {"expected": len(expected), "stale": len(stale),
         "stale_devices": ",".join(f"{d.facility}/{d.device}" for d in stale)},
        now_ms * 1_000_000)])
    if stale:
        log.warning("%d of %d meters are stale: %s", len(stale), len(expected),
                    ", ".join(f"{d.facility}/{d.device}" for d in stale))
    return FreshnessResult(now_ms, len(expected), stale, last_seen)
