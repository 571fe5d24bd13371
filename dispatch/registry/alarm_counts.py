"""The active alarms counted per source, for the estate overview: one grouped query
whatever the number of facilities, never one per facility."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from dispatch.alarms.model import SEVERITY_RANK
from dispatch.registry.control_room import AlarmRow
from dispatch.registry.db import Registry


@dataclass(frozen=True, slots=True)
class SourceAlarms:
    """How many alarms are active on a source, and the most urgent severity among them."""

    count: int
    worst_severity: str


def active_alarm_counts(registry: Registry, estate_id: str) -> dict[str, SourceAlarms]:
    """Per source (``facility/meter``, ``facility:<id>``, ``estate``), its active alarms
    that are not shelved (an operator shelves an alarm to take it off the screens)."""
    query = (select(AlarmRow.source, AlarmRow.severity, func.count())
             .where(AlarmRow.estate_id == estate_id, AlarmRow.active_slot == 1,
                    AlarmRow.state != "shelved")
             .group_by(AlarmRow.source, AlarmRow.severity))
    with registry.reading() as session:
        rows = session.execute(query).all()
    out: dict[str, SourceAlarms] = {}
    for source, severity, count in rows:
        known = out.get(source)
        if known is None:
            out[source] = SourceAlarms(int(count), severity)
            continue
        worst = min(known.worst_severity, severity,
                    key=lambda s: SEVERITY_RANK.get(s, len(SEVERITY_RANK)))
        out[source] = SourceAlarms(known.count + int(count), worst)
    return out
