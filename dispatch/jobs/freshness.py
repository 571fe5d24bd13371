"""Which meters have stopped reporting (a deadman check), from what the store holds."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from estate.lineprotocol import line
from estate.ports import TimeSeriesStore
from estate.schema import READINGS
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
    series = store.query(
        # The newest point of each meter, whatever it measured: ``last(*)`` would answer per
        # field and without the time.
        f'SELECT * FROM "{READINGS}" WHERE "estate" = $estate AND '
        f"time > now() - {int(lookback_h)}h GROUP BY \"facility\", \"device\" "
        "ORDER BY time DESC LIMIT 1",
        {"estate": estate})
    last_seen = {(s.tags["facility"], s.tags["device"]): int(s.values[0][0])
                 for s in series if s.values}
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
