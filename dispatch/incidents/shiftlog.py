"""The shift log and the handover between shifts.

Operators write **entries**: an ``event`` (what happened), an ``action`` (what they did) or
an ``open_item`` (what is still to do; it stays open until someone resolves it, across
shifts). At the end of a shift the outgoing operator **prepares a handover** naming the
incoming one: the entries of the shift, the open items, the active alarms and the open
incidents are put together as they stand then, and the incoming operator **accepts** it
(only they can, once). Both names and both times are kept; until it is accepted the
outgoing operator still holds the shift.

Pure values and functions; the registry stores them (``dispatch.registry.control_room``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from dispatch.alarms.model import cut
from estate.errors import EstateError

EntryKind = Literal["event", "action", "open_item"]
ENTRY_KINDS: Final[tuple[EntryKind, ...]] = ("event", "action", "open_item")
MAX_NAME: Final = 100
MAX_TEXT: Final = 2000


class ShiftLogError(EstateError, ValueError):
    """A log or handover step that is not allowed."""


def _who(by: str) -> str:
    name = by.strip()
    if not name:
        raise ShiftLogError("a step needs the name of who takes it")
    return cut(name, MAX_NAME)


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: str
    estate: str
    at: datetime
    by: str
    kind: EntryKind
    text: str
    resolved_at: datetime | None = None
    resolved_by: str | None = None

    @property
    def open(self) -> bool:
        return self.kind == "open_item" and self.resolved_at is None


def write_entry(id: str, estate: str, by: str, at: datetime, kind: str, text: str,
                ) -> LogEntry:
    if kind not in ENTRY_KINDS:
        raise ShiftLogError(f"an entry is one of {', '.join(ENTRY_KINDS)}, not {kind!r}")
    if not text.strip():
        raise ShiftLogError("an entry needs text")
    return LogEntry(id, estate, at, _who(by), kind, cut(text.strip(), MAX_TEXT))


def resolve_item(entry: LogEntry, by: str, at: datetime) -> LogEntry:
    if entry.kind != "open_item":
        raise ShiftLogError("only an open item is resolved")
    if entry.resolved_at is not None:
        raise ShiftLogError(f"the item was resolved by {entry.resolved_by}")
    return replace(entry, resolved_at=at, resolved_by=_who(by))


@dataclass(frozen=True, slots=True)
class AlarmSummary:
    """An active alarm as the handover shows it."""

    source: str
    rule_id: str
    severity: str
    state: str
    message: str
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """An open incident as the handover shows it."""

    id: str
    title: str
    severity: str
    status: str
    crew: str | None
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class Handover:
    id: str
    estate: str
    outgoing: str
    incoming: str
    prepared_at: datetime
    note: str
    entries: tuple[LogEntry, ...]  # the shift's entries and every open item
    alarms: tuple[AlarmSummary, ...]
    incidents: tuple[IncidentSummary, ...]
    accepted_at: datetime | None = None
    # What the incoming operator acknowledged, one by one, in accepting (``item_keys``).
    acknowledged: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.accepted_at is not None

    def item_keys(self) -> tuple[str, ...]:
        """Each active alarm (``alarm:<source>#<rule>``) and open incident
        (``incident:<id>``) handed over."""
        return (*(f"alarm:{a.source}#{a.rule_id}" for a in self.alarms),
                *(f"incident:{i.id}" for i in self.incidents))


def prepare_handover(id: str, estate: str, outgoing: str, incoming: str, at: datetime,
                     entries: Sequence[LogEntry], alarms: Sequence[AlarmSummary],
                     incidents: Sequence[IncidentSummary], note: str = "",
                     since: datetime | None = None) -> Handover:
    """What the outgoing operator hands over at ``at``: the entries written since ``since``
    (the last accepted handover), every open item whenever written, the active alarms and
    the open incidents, as they stand."""
    out, into = _who(outgoing), _who(incoming)
    if out == into:
        raise ShiftLogError("a handover goes to another operator")
    chosen = tuple(sorted((e for e in entries
                           if e.open or since is None or e.at >= since), key=lambda e: e.at))
    return Handover(id, estate, out, into, at, cut(note, MAX_TEXT), chosen, tuple(alarms),
                    tuple(incidents))


def accept_handover(handover: Handover, by: str, at: datetime,
                    acknowledged: Iterable[str] | None = None) -> Handover:
    """The incoming operator has seen it all and takes the shift. With ``acknowledged``
    (``Handover.item_keys``), each alarm and incident handed over must be in it."""
    who = _who(by)
    if handover.accepted:
        raise ShiftLogError(f"the handover was accepted at {handover.accepted_at}")
    if who != handover.incoming:
        raise ShiftLogError(f"the handover is for {handover.incoming}, not {who}")
    if at < handover.prepared_at:
        raise ShiftLogError("a handover is accepted after it is prepared")
    if acknowledged is None:
        return replace(handover, accepted_at=at)
    seen = set(acknowledged)
    missing = [k for k in handover.item_keys() if k not in seen]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                          if len(missing) > 5 else "")
        raise ShiftLogError(f"acknowledge each alarm and incident handed over first: "
                            f"{len(missing)} not acknowledged ({shown})")
    return replace(handover, accepted_at=at, acknowledged=handover.item_keys())
