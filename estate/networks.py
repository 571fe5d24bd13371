"""Utility networks of an estate: which meters feed which, for electricity, water and gas.

A network is a tree of meters of one utility. Its root is where the utility enters the
estate (the grid incomer, the well, the gas station); each node lists the meters it
``feeds``: an incomer feeds feeders, a feeder feeds tenants' incomers, a well pump feeds a
tank, the tank's outlet feeds tenants' water meters. What flows through a parent reaches
its children, less its **losses** (a share of the children's throughput: cables, pipes,
unmetered small users), so a parent that reads more than that is losing something: a
leak, theft, a meter fault. ``tolerance`` (a share of the flow) and ``tolerance_abs`` (in
the utility's flow unit) say how far the balance may stray before that is news.

::

    utilities/grid ─┬─ utilities/feeder-north ─┬─ textile/main
                    │                          └─ foods/main
                    └─ utilities/battery

The balance compares the utility's flow quantity (``FLOW_QUANTITY``: power in kW, water
or gas flow in m³/h). It is checked at a node only when the node and all its children
report that quantity and the node keeps ``balance: true``: a tank has no flow meter of its
own and its storage decouples what flows in from what flows out, so a tank node groups
what it supplies (an outage below it) but is never balanced, nor is the pump above it.

Meters are named ``facility/meter``. Checked when the estate loads (``check_networks``):
every meter exists, its kind belongs to the utility (``UTILITY_KINDS``) and, for a
parent, may feed others (``PARENT_KINDS``); each meter has at most one parent and appears
at most once per network; there are no cycles and each network has a single root; a meter
stands in at most one network per utility.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from estate.errors import TopicError
from estate.topics import validate_identifier as _validate

Utility = Literal["electricity", "water", "gas"]
UTILITIES: Final[tuple[Utility, ...]] = ("electricity", "water", "gas")

FLOW_QUANTITY: Final[Mapping[str, str]] = {
    "electricity": "power", "water": "water_flow", "gas": "gas_flow"}
"""The quantity a network's balance compares, per utility."""

UTILITY_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "electricity": frozenset({"electricity", "hvac", "pv", "battery", "genset", "pump"}),
    "water": frozenset({"water", "pump", "tank"}),
    "gas": frozenset({"gas"}),
}
"""The kinds of meter that may stand in a network of each utility."""

PARENT_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "electricity": frozenset({"electricity"}),
    "water": frozenset({"water", "pump", "tank"}),
    "gas": frozenset({"gas"}),
}
"""The kinds of meter the utility flows through on its way to other meters."""

FLOW_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "electricity": UTILITY_KINDS["electricity"],
    "water": frozenset({"water", "pump"}),
    "gas": frozenset({"gas"}),
}
"""The kinds that report the utility's flow quantity (a tank reports a level only)."""

MeterRef = str
"""A meter of the estate as ``facility/meter``."""


def meter_ref(facility: str, meter: str) -> MeterRef:
    return f"{facility}/{meter}"


def _check_ref(value: str) -> str:
    facility, sep, meter = value.partition("/")
    if not sep:
        raise ValueError(f"meter {value!r} must be written facility/meter")
    try:
        _validate(facility, "facility id")
        _validate(meter, "meter id")
    except TopicError as exc:
        raise ValueError(exc.detail) from exc
    return value


Share = Annotated[float, Field(ge=0, le=0.5)]


class NetworkNodeSpec(BaseModel):
    """A meter of a network and the meters it feeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: MeterRef
    feeds: tuple[MeterRef, ...] = Field(min_length=1)
    # Normal losses between this meter and its children, as a share of the children's
    # throughput (what the simulator adds, and what the balance expects).
    losses: Share = 0.0
    # Override of the network's tolerances for this node.
    tolerance: Annotated[float, Field(gt=0, le=1)] | None = None
    tolerance_abs: Annotated[float, Field(ge=0)] | None = None
    # False: never balance this node (its children meter only part of what passes).
    balance: bool = True

    @field_validator("meter")
    @classmethod
    def _meter(cls, value: str) -> str:
        return _check_ref(value)

    @field_validator("feeds")
    @classmethod
    def _feeds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_ref(v) for v in value)


class NetworkSpec(BaseModel):
    """One utility's network (a tree of meters) as the estate file describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    utility: Utility
    name: str = ""
    # The balance of a node may stray by this share of its flow (the larger of the parent
    # and its children's sum) beyond its losses. 5 %: class 2 meters are within 2 % each,
    # and a parent and its children add their errors.
    tolerance: Annotated[float, Field(gt=0, le=1)] = 0.05
    # ... and always by this much in the flow unit (kW or m³/h), so a network at rest (a
    # few m³/h at night) does not alarm on one meter's resolution.
    tolerance_abs: Annotated[float, Field(ge=0)] = 1.0
    nodes: tuple[NetworkNodeSpec, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        try:
            return _validate(value, "network id")
        except TopicError as exc:
            raise ValueError(exc.detail) from exc


@dataclass(frozen=True, slots=True)
class BalanceNode:
    """A node whose balance can be checked: the parent against the sum of its children."""

    network: str
    utility: str
    meter: MeterRef
    children: tuple[MeterRef, ...]
    losses: float
    tolerance: float
    tolerance_abs: float

    @property
    def quantity(self) -> str:
        return FLOW_QUANTITY[self.utility]

    def expected(self, children_sum: float, children_abs_sum: float) -> float:
        """What the parent should read given its children's flows."""
        return children_sum + self.losses * children_abs_sum

    def allowance(self, parent: float, children_abs_sum: float) -> float:
        """How far the parent may stray from ``expected`` before the balance is news."""
        return max(self.tolerance_abs, self.tolerance * max(abs(parent), children_abs_sum))


@dataclass(frozen=True)
class NetworkTree:
    """A validated network: parent and children of every meter, walks in both directions."""

    id: str
    utility: str
    name: str
    root: MeterRef
    children: Mapping[MeterRef, tuple[MeterRef, ...]]
    parent: Mapping[MeterRef, MeterRef]
    nodes: Mapping[MeterRef, NetworkNodeSpec]
    kinds: Mapping[MeterRef, str]
    tolerance: float
    tolerance_abs: float
    _order: tuple[MeterRef, ...] = field(default=(), repr=False)

    @property
    def meters(self) -> tuple[MeterRef, ...]:
        """Every meter of the network, root first, each parent before its children."""
        return self._order

    def __contains__(self, meter: object) -> bool:
        return meter in self.kinds

    def descendants(self, meter: MeterRef) -> list[MeterRef]:
        """Every meter below ``meter`` (not itself), parents before children."""
        out: list[MeterRef] = []
        stack = list(reversed(self.children.get(meter, ())))
        while stack:
            m = stack.pop()
            out.append(m)
            stack.extend(reversed(self.children.get(m, ())))
        return out

    def subtree(self, meter: MeterRef) -> list[MeterRef]:
        """``meter`` and everything below it."""
        return [meter, *self.descendants(meter)]

    def ancestors(self, meter: MeterRef) -> list[MeterRef]:
        """The meters above ``meter``, nearest first."""
        out: list[MeterRef] = []
        while meter in self.parent:
            meter = self.parent[meter]
            out.append(meter)
        return out

    def depth(self, meter: MeterRef) -> int:
        return len(self.ancestors(meter))

    def bottom_up(self) -> Iterator[MeterRef]:
        """Parents only, every child's subtree before its parent."""
        return (m for m in reversed(self._order) if m in self.children)

    def balance_nodes(self) -> list[BalanceNode]:
        """The nodes whose balance can be checked (see the module's docstring)."""
        flow = FLOW_KINDS[self.utility]
        out = []
        for meter in self._order:
            node = self.nodes.get(meter)
            if node is None or not node.balance:
                continue
            if self.kinds[meter] not in flow or any(
                    self.kinds[c] not in flow for c in self.children[meter]):
                continue
            out.append(BalanceNode(
                self.id, self.utility, meter, self.children[meter], node.losses,
                node.tolerance if node.tolerance is not None else self.tolerance,
                node.tolerance_abs if node.tolerance_abs is not None else self.tolerance_abs))
        return out


def build_tree(spec: NetworkSpec, kinds: Mapping[MeterRef, str]) -> NetworkTree:
    """Check ``spec`` against the estate's meters (``kinds``: meter -> kind) and build its
    tree; raise ``ValueError`` naming the first problem."""
    where = f"network {spec.id!r} ({spec.utility})"
    allowed, parents_allowed = UTILITY_KINDS[spec.utility], PARENT_KINDS[spec.utility]
    children: dict[MeterRef, tuple[MeterRef, ...]] = {}
    parent: dict[MeterRef, MeterRef] = {}
    nodes: dict[MeterRef, NetworkNodeSpec] = {}
    for node in spec.nodes:
        if node.meter in nodes:
            raise ValueError(f"{where}: meter {node.meter!r} is listed as a node twice")
        nodes[node.meter] = node
        if len(set(node.feeds)) != len(node.feeds):
            raise ValueError(f"{where}: {node.meter!r} feeds the same meter twice")
        for child in node.feeds:
            if child == node.meter:
                raise ValueError(f"{where}: {node.meter!r} feeds itself")
            if child in parent:
                raise ValueError(f"{where}: meter {child!r} is fed by both "
                                 f"{parent[child]!r} and {node.meter!r}; a network is a tree")
            parent[child] = node.meter
        children[node.meter] = node.feeds
    members = set(nodes) | set(parent)
    for meter in sorted(members):
        kind = kinds.get(meter)
        if kind is None:
            raise ValueError(f"{where}: no meter {meter!r} in the estate")
        if kind not in allowed:
            raise ValueError(f"{where}: meter {meter!r} is a {kind} meter, which has no place "
                             f"in a {spec.utility} network (allowed: {', '.join(sorted(allowed))})")
        if meter in nodes and kind not in parents_allowed:
            raise ValueError(f"{where}: meter {meter!r} ({kind}) cannot feed other meters in a "
                             f"{spec.utility} network (only {', '.join(sorted(parents_allowed))})")
    roots = sorted(m for m in nodes if m not in parent)
    if not roots:
        raise ValueError(f"{where}: the meters feed each other in a cycle; a network needs a "
                         "root (the meter where the utility enters)")
    if len(roots) > 1:
        raise ValueError(f"{where}: more than one root ({', '.join(roots)}); one network per "
                         "tree, so describe each tree as a network of its own")
    order: list[MeterRef] = []
    stack = [roots[0]]
    while stack:
        m = stack.pop()
        order.append(m)
        stack.extend(reversed(children.get(m, ())))
    if len(order) != len(members):
        unreachable = sorted(members - set(order))
        raise ValueError(f"{where}: meters {', '.join(unreachable)} are not below the root "
                         f"{roots[0]!r}: they feed each other in a cycle")
    return NetworkTree(spec.id, spec.utility, spec.name, roots[0], children, parent, nodes,
                       {m: kinds[m] for m in order}, spec.tolerance, spec.tolerance_abs,
                       tuple(order))


def check_networks(networks: Sequence[NetworkSpec],
                   kinds: Mapping[MeterRef, str]) -> list[NetworkTree]:
    """Every network built and checked, and across them: ids unique, a meter in at most one
    network per utility. Raise ``ValueError`` naming the first problem."""
    trees: list[NetworkTree] = []
    seen_ids: set[str] = set()
    owner: dict[tuple[str, MeterRef], str] = {}
    for spec in networks:
        if spec.id in seen_ids:
            raise ValueError(f"network {spec.id!r} appears twice")
        seen_ids.add(spec.id)
        tree = build_tree(spec, kinds)
        for meter in tree.meters:
            other = owner.setdefault((tree.utility, meter), tree.id)
            if other != tree.id:
                raise ValueError(f"meter {meter!r} is in {tree.utility} networks {other!r} and "
                                 f"{tree.id!r}; a meter belongs to one tree per utility")
        trees.append(tree)
    return trees


def trees_containing(trees: Iterable[NetworkTree], meter: MeterRef) -> list[NetworkTree]:
    return [t for t in trees if meter in t]
