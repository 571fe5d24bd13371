"""Alarm rules bound to an estate: which rule each meter, network node and capacity scope
gets (``bind_rules``, the most specific rule per id; ``estate.alarm_rules`` says how the
specificity is ranked) and the cross-checks of the estate file's rules against its meters,
facilities and networks (``check_alarm_rules``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from estate.alarm_rules import (
    DEFAULT_RULES,
    METER_RULES,
    AlarmRuleSpec,
    BalanceRule,
    BatterySocRule,
    CapacityRule,
    ClockSkewRule,
    NoDataRule,
    PowerFactorRule,
    RateOfChangeRule,
    SpikeRule,
    StuckRule,
    TankLevelRule,
    ThresholdRule,
    VoltageBandRule,
)
from estate.networks import BalanceNode, NetworkTree


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """What binding needs of a meter: its facility, id, kind and what it measures."""

    facility: str
    meter: str
    kind: str
    measures: frozenset[tuple[str, str]]

    @property
    def ref(self) -> str:
        return f"{self.facility}/{self.meter}"


def _applies(rule: AlarmRuleSpec, meter: MeterInfo) -> bool:
    """Whether ``rule`` means anything for ``meter`` (its scope aside)."""
    quantities = {q for q, _ in meter.measures}
    if isinstance(rule, NoDataRule | ClockSkewRule):
        return True
    if isinstance(rule, BatterySocRule):
        return meter.kind == "battery"
    if isinstance(rule, TankLevelRule):
        return meter.kind == "tank"
    if isinstance(rule, VoltageBandRule):
        return "voltage" in quantities
    if isinstance(rule, PowerFactorRule):
        return "power_factor" in quantities and "power" in quantities
    if isinstance(rule, ThresholdRule | RateOfChangeRule | StuckRule | SpikeRule):
        return (rule.quantity, rule.channel) in meter.measures
    return False


def _in_scope(rule: AlarmRuleSpec, meter: MeterInfo) -> bool:
    return ((rule.meter is None or rule.meter == meter.ref)
            and (rule.facility is None or rule.facility == meter.facility)
            and (rule.meter_kind is None or rule.meter_kind == meter.kind))


@dataclass(frozen=True, slots=True)
class BoundRule:
    """A rule as it applies to one source (a meter ``facility/meter``, a facility as
    ``facility:<id>``, or ``estate``)."""

    source: str
    rule: AlarmRuleSpec


@dataclass(frozen=True, slots=True)
class BoundBalance:
    node: BalanceNode
    rule: BalanceRule

    @property
    def source(self) -> str:
        return self.node.meter


@dataclass(frozen=True, slots=True)
class BoundCapacity:
    """A capacity rule for the estate (``facility`` None) or one facility."""

    facility: str | None
    rule: CapacityRule

    @property
    def source(self) -> str:
        return "estate" if self.facility is None else f"facility:{self.facility}"


@dataclass(frozen=True)
class RuleBook:
    """Every rule bound to its sources, split by the evaluator that runs it."""

    meters: tuple[MeterInfo, ...]
    stream: tuple[BoundRule, ...]
    window: tuple[BoundRule, ...]
    balance: tuple[BoundBalance, ...]
    capacity: tuple[BoundCapacity, ...]

    def rules_of(self, source: str) -> list[AlarmRuleSpec]:
        return [b.rule for b in (*self.stream, *self.window) if b.source == source]


def _winner(candidates: Sequence[tuple[int, AlarmRuleSpec]]) -> AlarmRuleSpec | None:
    """The most specific candidate; at the same specificity the later one (file after
    defaults, later in the file after earlier)."""
    best: tuple[tuple[int, int], AlarmRuleSpec] | None = None
    for order, rule in candidates:
        rank = (rule.specificity, order)
        if best is None or rank > best[0]:
            best = (rank, rule)
    return None if best is None else best[1]


def bind_rules(meters: Iterable[MeterInfo], rules: Sequence[AlarmRuleSpec],
               trees: Sequence[NetworkTree], capacity_facilities: Iterable[str] = (),
               defaults: Sequence[AlarmRuleSpec] = DEFAULT_RULES) -> RuleBook:
    """Bind ``defaults`` and ``rules`` (the estate file's) to the estate's meters, network
    nodes and capacity scopes (``capacity_facilities``: facilities with a sub-limit)."""
    ordered = list(enumerate([*defaults, *rules]))
    by_id: dict[str, list[tuple[int, AlarmRuleSpec]]] = {}
    for order, rule in ordered:
        by_id.setdefault(rule.id, []).append((order, rule))
    meter_list = tuple(meters)
    stream: list[BoundRule] = []
    window: list[BoundRule] = []
    for meter in meter_list:
        for candidates in by_id.values():
            meter_rule = _winner([(o, r) for o, r in candidates
                                  if isinstance(r, METER_RULES) and _in_scope(r, meter)])
            if meter_rule is None or not meter_rule.enabled or not _applies(meter_rule, meter):
                continue
            bound = BoundRule(meter.ref, meter_rule)
            (window if meter_rule.mode == "window" else stream).append(bound)
    balance: list[BoundBalance] = []
    for tree in trees:
        for node in tree.balance_nodes():
            facility = node.meter.split("/", 1)[0]
            for candidates in by_id.values():
                balance_rule = _winner([
                    (o, r) for o, r in candidates if isinstance(r, BalanceRule)
                    and (r.network is None or r.network == tree.id)
                    and (r.meter is None or r.meter == node.meter)
                    and (r.facility is None or r.facility == facility)
                    and (r.meter_kind is None or r.meter_kind == tree.kinds[node.meter])])
                if balance_rule is not None and balance_rule.enabled:
                    assert isinstance(balance_rule, BalanceRule)
                    balance.append(BoundBalance(node, balance_rule))
    capacity: list[BoundCapacity] = []
    scopes: list[str | None] = [None, *sorted(set(capacity_facilities))]
    for scope in scopes:
        for candidates in by_id.values():
            # A facility with a sub-limit gets the estate's capacity rules unless rules of
            # its own override them.
            capacity_rule = _winner([
                (o, r) for o, r in candidates
                if isinstance(r, CapacityRule) and r.facility in (None, scope)])
            if capacity_rule is not None and capacity_rule.enabled:
                assert isinstance(capacity_rule, CapacityRule)
                capacity.append(BoundCapacity(scope, capacity_rule))
    return RuleBook(meter_list, tuple(stream), tuple(window), tuple(balance), tuple(capacity))


def check_alarm_rules(rules: Sequence[AlarmRuleSpec], meters: Mapping[str, MeterInfo],
                      facilities: Iterable[str], networks: Iterable[str]) -> None:
    """Cross-checks against the estate; raise ``ValueError`` naming the first problem."""
    known_facilities, known_networks = set(facilities), set(networks)
    seen: set[tuple[str, str | None, str | None, str | None, str | None]] = set()
    for rule in rules:
        where = f"alarm rule {rule.id!r} ({rule.kind}, {rule.scope_text()})"
        key = (rule.id, rule.facility, rule.meter_kind, rule.meter,
               getattr(rule, "network", None))
        if key in seen:
            raise ValueError(f"{where} appears twice with the same scope")
        seen.add(key)
        others = sorted({r.kind for r in rules if r.id == rule.id} - {rule.kind})
        if others:
            raise ValueError(f"{where}: id {rule.id!r} is also a {others[0]} rule; one id, "
                             "one kind")
        default_kinds = {r.kind for r in DEFAULT_RULES if r.id == rule.id}
        if default_kinds and rule.kind not in default_kinds:
            raise ValueError(f"{where}: id {rule.id!r} is a default {'/'.join(default_kinds)} "
                             "rule; overriding it takes the same kind")
        if rule.facility is not None and rule.facility not in known_facilities:
            raise ValueError(f"{where}: no facility {rule.facility!r}")
        if rule.meter is not None:
            meter = meters.get(rule.meter)
            if meter is None:
                raise ValueError(f"{where}: no meter {rule.meter!r}")
            if rule.facility is not None and rule.facility != meter.facility:
                raise ValueError(f"{where}: meter {rule.meter!r} is not in facility "
                                 f"{rule.facility!r}")
        if isinstance(rule, BalanceRule):
            if rule.network is not None and rule.network not in known_networks:
                raise ValueError(f"{where}: no network {rule.network!r}")
            continue
        if isinstance(rule, CapacityRule):
            if rule.meter is not None or rule.meter_kind is not None:
                raise ValueError(f"{where}: a capacity rule applies to the estate or a "
                                 "facility, not to meters")
            continue
        in_scope = [m for m in meters.values() if _in_scope(rule, m)]
        if rule.enabled and in_scope and not any(_applies(rule, m) for m in in_scope):
            what = getattr(rule, "quantity", rule.kind)
            raise ValueError(f"{where}: none of the meters in scope measures {what}")
