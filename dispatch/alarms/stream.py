"""Rules evaluated as readings arrive: one decoded reading at a time, a few microseconds each.

``StreamEvaluator(estate, book, start_ms)`` takes the rule book's streaming rules
(``estate.rule_binding.RuleBook.stream``) and keeps one small state per source and rule,
made when it is built: readings from devices the estate does not describe, or of
quantities no rule watches, cost one dictionary lookup and are counted, never stored. So
its memory is fixed by the estate, whatever devices send.

- ``feed(reading, received_ms)`` / ``feed_pack(readings, received_ms)``: the transitions
  the readings cause. Times in rules (``for_s``, rates) are the readings' own times, so a
  replayed backlog is judged as it happened; a reading older than the last one a state has
  seen is ignored by that state. ``received_ms`` is the arrival time, for the clock check
  and the deadman.
- ``tick(now_ms)``: the deadman (``no_data``): sources silent for their timeout are raised
  at ``now_ms``; any reading from a source clears its deadman. Call it about once a second.

Kinds: threshold, voltage band (every phase; raised when one is out, cleared when all are
back), battery charge and tank level (bands on ``state_of_charge``), rate of change, stuck
value, spike, clock skew and no data (the checks: ``dispatch.alarms.stream_checks``). The
windowed kinds are in ``dispatch.alarms.window``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dispatch.alarms.model import AlarmTransition
from dispatch.alarms.stream_checks import (
    VOLTAGE_CHANNELS,
    BandCheck,
    Check,
    Meta,
    PhasesCheck,
    RateCheck,
    SkewCheck,
    SpikeCheck,
    StuckCheck,
)
from estate.alarm_rules import (
    AlarmRuleSpec,
    BatterySocRule,
    ClockSkewRule,
    NoDataRule,
    RateOfChangeRule,
    SpikeRule,
    StuckRule,
    TankLevelRule,
    ThresholdRule,
    VoltageBandRule,
)
from estate.readings import Reading
from estate.rule_binding import RuleBook
from estate.units import QUANTITIES


@dataclass
class StreamCounts:
    readings: int = 0
    unknown_source: int = 0
    unwatched: int = 0


class StreamEvaluator:
    """The streaming rules of one estate (see the module's docstring)."""

    def __init__(self, estate: str, book: RuleBook, start_ms: int) -> None:
        self.estate = estate
        self.counts = StreamCounts()
        self._routes: dict[tuple[str, str, str, str], list[Check]] = {}
        self._skews: dict[tuple[str, str], SkewCheck] = {}
        self._index: dict[tuple[str, str], int] = {}
        self._names = [m.ref for m in book.meters]
        for i, meter in enumerate(book.meters):
            self._index[(meter.facility, meter.meter)] = i
        n = len(self._names)
        self._last_seen = np.full(n, start_ms, dtype=np.int64)
        self._timeout = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        self._dead = np.zeros(n, dtype=bool)
        self._deadman: dict[int, Meta] = {}
        self._checks: dict[tuple[str, str], Check | SkewCheck | int] = {}
        for bound in book.stream:
            self._bind(bound.source, bound.rule)

    @property
    def sources(self) -> int:
        return len(self._names)

    def _add(self, facility: str, device: str, quantity: str, channel: str,
             check: Check) -> None:
        self._routes.setdefault((facility, device, quantity, channel), []).append(check)
        self._checks[(f"{facility}/{device}", check.meta.rule_id
                      if not isinstance(check, RateCheck) else check.band.meta.rule_id)] = check

    def _bind(self, source: str, rule: AlarmRuleSpec) -> None:
        facility, device = source.split("/", 1)
        meta = Meta(source, rule.id, rule.kind, rule.severity, rule.name)
        if isinstance(rule, NoDataRule):
            i = self._index[(facility, device)]
            self._timeout[i] = int(rule.timeout_s * 1000)
            self._deadman[i] = meta
            self._checks[(source, rule.id)] = i
        elif isinstance(rule, ClockSkewRule):
            skew = SkewCheck(meta, rule)
            self._skews[(facility, device)] = skew
            self._checks[(source, rule.id)] = skew
        elif isinstance(rule, VoltageBandRule):
            low, high, hyst = rule.band()
            phases = PhasesCheck(meta, low, high, hyst, rule.for_s)
            for channel in VOLTAGE_CHANNELS:
                self._add(facility, device, "voltage", channel, phases)
        elif isinstance(rule, ThresholdRule | BatterySocRule | TankLevelRule):
            low, high, hyst = rule.band()
            quantity = rule.quantity
            channel = getattr(rule, "channel", "")
            what = QUANTITIES[quantity].label.lower()
            self._add(facility, device, quantity, channel,
                      BandCheck(meta, low, high, hyst, rule.for_s, what,
                            QUANTITIES[quantity].unit))
        elif isinstance(rule, RateOfChangeRule):
            self._add(facility, device, rule.quantity, rule.channel,
                      RateCheck(meta, rule.max_per_min, rule.for_s, QUANTITIES[rule.quantity].unit))
        elif isinstance(rule, StuckRule):
            self._add(facility, device, rule.quantity, rule.channel,
                      StuckCheck(meta, rule.for_s, rule.tolerance, QUANTITIES[rule.quantity].unit))
        elif isinstance(rule, SpikeRule):
            self._add(facility, device, rule.quantity, rule.channel,
                      SpikeCheck(meta, rule, QUANTITIES[rule.quantity].unit))
        else:
            raise ValueError(f"rule {rule.id} ({rule.kind}) is not a streaming rule")

    def feed(self, reading: Reading, received_ms: int) -> list[AlarmTransition]:
        """The transitions one reading causes."""
        return self.feed_pack((reading,), received_ms)

    def feed_pack(self, readings: Sequence[Reading], received_ms: int,
                  ) -> list[AlarmTransition]:
        """The transitions a pack of readings (one message) causes."""
        out: list[AlarmTransition] = []
        seen: set[tuple[str, str]] = set()
        routes = self._routes
        for r in readings:
            self.counts.readings += 1
            if r.estate != self.estate:
                self.counts.unknown_source += 1
                continue
            source = (r.facility, r.device)
            if source not in seen:
                seen.add(source)
                if not self._seen(source, received_ms, out):
                    self.counts.unknown_source += 1
                    continue
                skew = self._skews.get(source)
                if skew is not None:
                    t = skew.update(r.time_ms, received_ms)
                    if t is not None:
                        out.append(t)
            elif source not in self._index:
                self.counts.unknown_source += 1
                continue
            checks = routes.get((r.facility, r.device, r.quantity, r.channel))
            if checks is None:
                self.counts.unwatched += 1
                continue
            value = r.value
            if not math.isfinite(value):
                continue
            for check in checks:
                t = check.on(r.channel, value, r.time_ms)
                if t is not None:
                    out.append(t)
        return out

    def _seen(self, source: tuple[str, str], received_ms: int,
              out: list[AlarmTransition]) -> bool:
        i = self._index.get(source)
        if i is None:
            return False
        if received_ms > self._last_seen[i]:
            self._last_seen[i] = received_ms
        if self._dead[i]:
            self._dead[i] = False
            meta = self._deadman[i]
            out.append(meta.transition("clear", None, "reporting again", received_ms))
        return True

    def tick(self, now_ms: int) -> list[AlarmTransition]:
        """Deadman: raise ``no_data`` for every source silent beyond its timeout."""
        silent = np.flatnonzero(~self._dead & (now_ms - self._last_seen > self._timeout))
        out = []
        for i in silent.tolist():
            self._dead[i] = True
            meta = self._deadman[i]
            quiet = (now_ms - int(self._last_seen[i])) / 1000
            out.append(meta.transition("raise", quiet, f"nothing for {quiet:.0f} s", now_ms))
        return out

    def restore(self, active: Iterable[tuple[str, str, float | None]]) -> int:
        """Mark the alarms the registry holds active ((source, rule id, value) each), so
        that a restarted evaluator clears them when their condition ends instead of never
        knowing they were raised. Unknown ones are skipped; the number restored."""
        restored = 0
        for source, rule_id, value in active:
            check = self._checks.get((source, rule_id))
            if check is None:
                continue
            if isinstance(check, int):
                self._dead[check] = True
            else:
                check.restore(value)
            restored += 1
        return restored

    def silent(self) -> list[str]:
        """Sources whose deadman is raised."""
        return [self._names[i] for i in np.flatnonzero(self._dead).tolist()]


def feed_all(evaluator: StreamEvaluator, packs: Iterable[tuple[Sequence[Reading], int]],
             ) -> list[AlarmTransition]:
    """Every transition of a sequence of (pack, received_ms): a helper for replays."""
    out: list[AlarmTransition] = []
    for readings, received in packs:
        out.extend(evaluator.feed_pack(readings, received))
    return out
