"""Flood grouping: alarms that one fault upstream explains become one group naming it.

A feeder that trips silences every meter below it; a tank that runs dry leaves every
meter below it without pressure. Forty alarms then say one thing: the likely cause is the
highest node of the network whose subtree is (nearly) all affected. ``group_alarms``
finds those nodes:

- a node **covers** its subtree when at least ``min_members`` of the meters below it, and
  at least ``min_share`` of them, have an active alarm (the node's own meter counts as a
  member of the group but not toward the share: a tripped feeder's meter may or may not
  fall silent with what it feeds);
- a covering node with no covering node above it makes a group; its **cause** is the
  lowest node whose subtree holds all the alarms below the covering node, raised through
  the nodes above it while everything below them is affected: a tower whose outlet meter
  and all it feeds lost pressure is the cause, not the outlet meter, nor the pump above the
  tower that still reports normally;
- a group takes every alarm on its cause's subtree, the cause's own included;
- a meter in two networks (a pump on the electricity and the water network) is grouped
  once: larger groups first;
- everything else stays ungrouped.

Pure: networks and alarm keys in, groups out. ``dispatch.incidents`` opens one incident
per group (keyed by ``Group.key``, stable while the group lasts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from dispatch.alarms.model import AlarmKey, is_meter_source
from estate.networks import NetworkTree

# Four of five meters below a node: a feeder whose one meter happens to report through
# another path still groups, two coincidental alarms under a large feeder do not.
MIN_SHARE: Final = 0.8
# Three alarms make a flood worth grouping; two are read one by one.
MIN_MEMBERS: Final = 3


@dataclass(frozen=True, slots=True)
class GroupedAlarm:
    """What grouping needs of an active alarm."""

    source: str
    rule_id: str
    rule_kind: str

    @property
    def key(self) -> AlarmKey:
        return (self.source, self.rule_id)


@dataclass(frozen=True, slots=True)
class Group:
    network: str
    utility: str
    cause: str  # the node's meter
    members: tuple[GroupedAlarm, ...]
    affected: int  # meters below the cause with an alarm
    below: int  # meters below the cause

    @property
    def key(self) -> str:
        """Stable while the group lasts: an incident is opened once per key."""
        return f"group:{self.network}:{self.cause}"

    @property
    def kinds(self) -> Counter[str]:
        return Counter(a.rule_kind for a in self.members)

    def describe(self, names: dict[str, str] | None = None) -> str:
        name = (names or {}).get(self.cause, self.cause)
        kinds = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in self.kinds.most_common())
        return (f"{name}: {self.affected} of the {self.below} meters below it affected "
                f"on the {self.utility} network ({kinds}); likely cause: {self.cause}")


@dataclass(frozen=True, slots=True)
class Grouping:
    groups: tuple[Group, ...]
    ungrouped: tuple[GroupedAlarm, ...]


def _cause(tree: NetworkTree, top: str, affected: set[str], hits: dict[str, int],
           below: dict[str, int]) -> str:
    """The lowest node holding every affected meter of ``top``'s subtree, raised while the
    node above it has everything below it affected."""
    node = top
    while node not in affected:
        holding = [c for c in tree.children.get(node, ())
                   if c in affected or hits.get(c, 0) > 0]
        if len(holding) != 1:
            break
        node = holding[0]
    while node in tree.parent:
        parent = tree.parent[node]
        if hits.get(parent, 0) < below.get(parent, 0):
            break
        node = parent
    return node


def group_alarms(trees: Sequence[NetworkTree], alarms: Iterable[GroupedAlarm], *,
                 min_share: float = MIN_SHARE, min_members: int = MIN_MEMBERS) -> Grouping:
    """Group ``alarms`` by the networks (see the module's docstring)."""
    by_meter: dict[str, list[GroupedAlarm]] = {}
    others: list[GroupedAlarm] = []
    for alarm in alarms:
        if is_meter_source(alarm.source):
            by_meter.setdefault(alarm.source, []).append(alarm)
        else:
            others.append(alarm)
    candidates: list[Group] = []
    for tree in trees:
        affected = {m for m in tree.meters if m in by_meter}
        if len(affected) < min_members:
            continue
        below_count: dict[str, int] = {}
        hit_count: dict[str, int] = {}
        for meter in tree.bottom_up():
            n = hits = 0
            for child in tree.children[meter]:
                n += 1 + below_count.get(child, 0)
                hits += (child in affected) + hit_count.get(child, 0)
            below_count[meter], hit_count[meter] = n, hits
        covering = {m for m, n in below_count.items()
                    if hit_count[m] >= min_members and hit_count[m] >= min_share * n}
        for top in covering:
            if any(a in covering for a in tree.ancestors(top)):
                continue
            cause = _cause(tree, top, affected, hit_count, below_count)
            members = tuple(a for m in tree.subtree(cause) for a in by_meter.get(m, ()))
            candidates.append(Group(tree.id, tree.utility, cause, members,
                                    hit_count.get(cause, 0), below_count.get(cause, 0)))
    candidates.sort(key=lambda g: (-len(g.members), g.network, g.cause))
    taken: set[AlarmKey] = set()
    groups: list[Group] = []
    for group in candidates:
        members = tuple(a for a in group.members if a.key not in taken)
        if len({a.source for a in members}) < min_members:
            continue
        taken.update(a.key for a in members)
        groups.append(Group(group.network, group.utility, group.cause, members,
                            group.affected, group.below))
    ungrouped = [a for alarms_of in by_meter.values() for a in alarms_of if a.key not in taken]
    return Grouping(tuple(groups), tuple(others + ungrouped))
