"""The rollup levels, their windows and the job's progress: which windows a run of the
rollup job (``dispatch.jobs.rollups``) computes. Pure arithmetic; docs/rollups.md.

Levels, each from the one before, so a coarser level never rereads raw data:

    reading            raw, default policy "raw"
     ├─ reading_1m      rollup_1m     sum, count, min, max, last -> mean = sum / count
     │   └─ reading_15m  rollup_long  sums of sums and counts, min of mins, max of maxes,
     │       └─ reading_1h            last of lasts
     └─ consumption_15m  rollup_long  registers only: deltas between readings (Python)
         └─ consumption_1h            sums
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from dispatch.settings import RollupSettings
from estate.lineprotocol import FieldValue
from estate.ports import SeriesRef

MINUTE_MS: Final = 60_000
QUARTER_MS: Final = 15 * MINUTE_MS
HOUR_MS: Final = 60 * MINUTE_MS

POLICY_1M: Final = "rollup_1m"
"""The retention policy of the 1-minute rollups (90 days by default)."""
POLICY_LONG: Final = "rollup_long"
"""The retention policy of the 15-minute and hourly rollups and consumption (forever)."""
ROLLUP_WATERMARK: Final = "rollup_watermark"
"""The job's progress, in ``rollup_long``: per level the end of the last window rolled up
(``<measurement>_done_ms``) and the start of the first (``<measurement>_since_ms``), and the
time of the newest rollup request handled (``requests_ms``)."""

TAG_KEYS: Final = ("estate", "facility", "device", "quantity", "channel")


@dataclass(frozen=True, slots=True)
class Level:
    """One rollup level: what it is called, its window, where it lives, what it is made of."""

    measurement: str
    window_ms: int
    policy: str
    source: Level | None  # None: the raw readings
    consumption: bool = False

    @property
    def series(self) -> SeriesRef:
        return SeriesRef(self.measurement, self.policy)


READING_1M: Final = Level("reading_1m", MINUTE_MS, POLICY_1M, None)
READING_15M: Final = Level("reading_15m", QUARTER_MS, POLICY_LONG, READING_1M)
READING_1H: Final = Level("reading_1h", HOUR_MS, POLICY_LONG, READING_15M)
CONSUMPTION_15M: Final = Level("consumption_15m", QUARTER_MS, POLICY_LONG, None, True)
CONSUMPTION_1H: Final = Level("consumption_1h", HOUR_MS, POLICY_LONG, CONSUMPTION_15M, True)
LEVELS: Final = (READING_1M, READING_15M, READING_1H, CONSUMPTION_15M, CONSUMPTION_1H)
"""Every level, each after the level it is computed from."""


# Window arithmetic.

def align_down(t_ms: int, window_ms: int) -> int:
    return t_ms - t_ms % window_ms


def align_up(t_ms: int, window_ms: int) -> int:
    return -(-t_ms // window_ms) * window_ms


def spans(start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive pieces of at most ``step_ms``."""
    return [(s, min(s + step_ms, end_ms)) for s in range(start_ms, end_ms, step_ms)]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of half-open ranges, sorted, touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def take(ranges: list[tuple[int, int]], budget_ms: int,
         ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split sorted ranges into the first ``budget_ms`` of them and the rest."""
    now: list[tuple[int, int]] = []
    rest: list[tuple[int, int]] = []
    for start, end in ranges:
        if budget_ms <= 0:
            rest.append((start, end))
            continue
        cut = min(end, start + budget_ms)
        now.append((start, cut))
        budget_ms -= cut - start
        if cut < end:
            rest.append((cut, end))
    return now, rest


def plan(window_ms: int, now_ms: int, settings: RollupSettings, trailing_ms: int, *,
         done_ms: int | None = None, source_done_ms: int | None = None,
         source_since_ms: int | None = None) -> tuple[int, int] | None:
    """Which windows of a level this run computes, as ``[start, end)``, or None.

    The end is the last complete window before ``now - grace`` that the source level has
    covered; nothing is done until a new window is complete. The start reaches back over
    the trailing period, or further to where the level stopped last (a worker that was
    stopped catches up), but never before the source level's first window (``since``: a
    window it only partly covers would be rolled up from part of its data), nor beyond
    ``max_age``. One run covers at most ``max_span_per_run`` of it.
    """
    end = align_down(now_ms - round(settings.grace_s * 1000), window_ms)
    if source_done_ms is not None:
        end = min(end, align_down(source_done_ms, window_ms))
    if done_ms is not None and end <= done_ms:
        return None
    start = align_down(end - trailing_ms, window_ms)
    if done_ms is not None:
        start = min(start, align_down(done_ms, window_ms))
    start = max(start, align_up(now_ms - round(settings.max_age_s * 1000), window_ms))
    if source_since_ms is not None:
        start = max(start, align_up(source_since_ms, window_ms))
    end = min(end, start + max(window_ms, align_down(settings.max_span_per_run_s * 1000,
                                                     window_ms)))
    return (start, end) if end > start else None


def request_range(start_ms: int, end_ms: int) -> tuple[int, int]:
    """The whole hours a request covers (its ``end_ms`` is its last reading, included)."""
    return align_down(start_ms, HOUR_MS), align_up(end_ms + 1, HOUR_MS)


@dataclass
class Progress:
    """Where the job stands; kept in ``rollup_watermark`` so a restarted worker continues.

    Per level: ``done`` is the end of the last window rolled up, ``since`` the start of
    the first; and the time of the newest rollup request handled.
    """

    done_ms: dict[str, int] = field(default_factory=dict)
    since_ms: dict[str, int] = field(default_factory=dict)
    requests_ms: int | None = None

    def fields(self) -> dict[str, FieldValue]:
        out: dict[str, FieldValue] = {}
        for level in LEVELS:
            for suffix, known in (("done_ms", self.done_ms), ("since_ms", self.since_ms)):
                if level.measurement in known:
                    out[f"{level.measurement}_{suffix}"] = known[level.measurement]
        if self.requests_ms is not None:
            out["requests_ms"] = self.requests_ms
        return out

    @classmethod
    def from_fields(cls, row: Mapping[str, object]) -> Progress:
        def known(suffix: str) -> dict[str, int]:
            return {lv.measurement: int(value) for lv in LEVELS
                    if isinstance(value := row.get(f"{lv.measurement}_{suffix}"), int)}
        requests = row.get("requests_ms")
        return cls(known("done_ms"), known("since_ms"),
                   requests if isinstance(requests, int) else None)


def progress_names() -> list[str]:
    """The fields of ``rollup_watermark``."""
    return [f"{lv.measurement}_{suffix}" for lv in LEVELS
            for suffix in ("done_ms", "since_ms")] + ["requests_ms"]
