"""The windowed rules as a scheduler job: each run judges the newest whole window step
(``window_every_s``, aligned to the clock, ``window_grace_s`` after it ended) with the
store's aggregates, then records the transitions and brings incidents and crews up to date
in one transaction (``dispatch.registry.room_step``). A step already judged is not judged again,
and a worker that was stopped judges the newest step only: the rules' waits count in
window ends, and a balance judged on windows long past would only repeat history."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

from dispatch.alarms.frames import ForecastReader, SeriesKey, WindowFrame, WindowInputs
from dispatch.alarms.window import WindowedEvaluator
from dispatch.registry import alarm_board
from dispatch.registry.db import Registry
from dispatch.registry.room_step import CycleOutcome, RoomContext, control_room_step
from dispatch.settings import AlarmSettings
from dispatch.watch.metrics import RULE_EVALUATION, TRANSITIONS
from dispatch.watch.window_inputs import capacity_inputs, read_frame, read_last_seen
from estate.model import EstateSpec
from estate.ports import TimeSeriesStore

log = logging.getLogger(__name__)

# A meter's newest reading is looked for this far back (no-data rules on windows): longer
# than any no-data timeout the rules allow by default, and one bounded query.
_LAST_SEEN_LOOKBACK_S = 6 * 3600.0


class WindowJob:
    """The job (callable without arguments); ``activate`` at each gain of the lease.
    ``forecasts`` reads the stored forecast for the capacity rules that look ahead (the
    composition root hands the planning room's reader in); without it they stay quiet."""

    def __init__(self, spec: EstateSpec, store: TimeSeriesStore, registry: Registry,
                 room: RoomContext, settings: AlarmSettings,
                 forecasts: ForecastReader | None = None) -> None:
        self._spec = spec
        self._store = store
        self._registry = registry
        self._room = room
        self._forecasts = forecasts
        self._step_ms = int(settings.window_every_s * 1000)
        self._grace_ms = int(settings.window_grace_s * 1000)
        self._evaluator: WindowedEvaluator | None = None
        # Each meter's newest reading is read only for no-data rules judged on windows.
        self._deadman = any(b.rule.kind == "no_data" for b in spec.rule_book().window)
        self._started_ms = 0
        self._last_end_ms = 0

    def activate(self) -> None:
        """A fresh evaluator that knows the alarms the registry holds active, so it clears
        them when their condition ends (another worker may have raised them)."""
        evaluator = WindowedEvaluator(self._spec.rule_book(),
                                      stuck_span_s=self._step_ms / 1000)
        with self._registry.reading() as session:
            active = alarm_board.active_alarms(session, self._room.estate)
        restored = evaluator.restore((a.alarm.source, a.alarm.rule_id, a.alarm.value)
                                     for a in active)
        log.info("windowed rules: %d source-rule pairs, %d active alarms restored",
                 evaluator.rule_rows, restored)
        self._evaluator = evaluator
        self._started_ms = time.time_ns() // 1_000_000

    def needs(self, evaluator: WindowedEvaluator) -> dict[float, set[SeriesKey]]:
        wanted = {span: set(keys) for span, keys in evaluator.needs().items()}
        for span in evaluator.capacity_windows().values():
            wanted.setdefault(span, set()).add(("power", ""))
        return wanted

    def __call__(self, now_ms: int | None = None) -> CycleOutcome | None:
        evaluator = self._evaluator
        if evaluator is None:
            self.activate()
            evaluator = self._evaluator
            assert evaluator is not None
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        end_ms = (now_ms - self._grace_ms) // self._step_ms * self._step_ms
        if end_ms <= self._last_end_ms:
            return None
        began = time.perf_counter()
        frames: dict[float, WindowFrame] = {}
        for span, keys in self.needs(evaluator).items():
            frames[span] = read_frame(self._store, self._room.estate, evaluator.meters, keys,
                                      end_ms, span, self._step_ms)
        last_seen = read_last_seen(self._store, self._room.estate, evaluator.meters, end_ms,
                                   _LAST_SEEN_LOOKBACK_S, self._started_ms) \
            if self._deadman else None
        capacity = capacity_inputs(self._spec, evaluator.meters, frames,
                                   evaluator.capacity_windows(), end_ms)
        horizons = evaluator.forecast_horizons()
        if self._forecasts is not None and horizons:
            capacity = replace(capacity, forecast=self._forecasts(horizons, end_ms))
        transitions = evaluator.evaluate(WindowInputs(end_ms, frames, last_seen, capacity))
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        try:
            with self._registry.writing() as session:
                outcome = control_room_step(session, self._room, transitions, now)
        except Exception:
            # The evaluator moved on; the registry did not: start again from the registry.
            self._evaluator = None
            raise
        self._last_end_ms = end_ms
        RULE_EVALUATION.labels("window").observe(time.perf_counter() - began)
        TRANSITIONS.labels("raise").inc(outcome.raised)
        TRANSITIONS.labels("clear").inc(outcome.cleared)
        if transitions:
            log.info("windowed rules at %s: %d raised, %d cleared",
                     now.isoformat(timespec="seconds"), outcome.raised, outcome.cleared)
        return outcome

    def deactivate(self) -> None:
        self._evaluator = None
