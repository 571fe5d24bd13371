"""The alarm board in the web view: active alarms, the most severe first, then the oldest;
an operator acknowledges, shelves for a while with a reason, takes off the shelf and
comments. The same registry functions as ``estate alarms`` (``dispatch.registry.
alarm_board``), each step with its history and its outbox event in one transaction, under
the name of the logged-in user. An account bound to a facility sees and moves its own
facility's alarms only. A step the alarm's state refuses is 409 with the reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from dispatch.alarms.lifecycle import MAX_NOTE, MAX_SHELVE
from dispatch.registry import alarm_board
from dispatch.registry.account_desk import Identity
from dispatch.web.auth import Operator, Viewer
from dispatch.web.deps import RegistryDep, Spec
from dispatch.web.room_views import (
    Limit,
    Offset,
    actor,
    alarm_view,
    check_visible,
    current_time,
    page,
    source_facility,
    visible,
)

router = APIRouter(tags=["alarms"])

AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# The steps shown with one alarm: its whole life is seldom longer; a flapping one is cut.
MAX_STEPS: Final = 200
MAX_SHELVE_MINUTES: Final = MAX_SHELVE.total_seconds() / 60


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=MAX_NOTE)


class ShelveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: float = Field(gt=0, le=MAX_SHELVE_MINUTES,
                           description="for how long (at most a day)")
    reason: str = Field(min_length=1, max_length=MAX_NOTE, pattern=r"\S")


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_NOTE, pattern=r"\S")


@router.get("/api/alarms")
def alarms(registry: RegistryDep, spec: Spec, identity: Viewer, limit: Limit = 100,
           offset: Offset = 0,
           state: Annotated[Literal["raised", "acknowledged", "shelved"] | None,
                            Query(description="only alarms in this state")] = None,
           ) -> dict[str, Any]:
    """Active alarms (shelved ones included, marked), most severe first, then oldest."""
    with registry.reading() as session:
        records = alarm_board.active_alarms(session, spec.id)
    shown = [r for r in records if visible(identity, source_facility(r.alarm.source))
             and (state is None or r.alarm.state == state)]
    chosen, paging = page(shown, limit, offset)
    return {"estate": spec.id, "timezone": spec.timezone,
            "facility": identity.user.facility, "alarms": [alarm_view(r) for r in chosen],
            **paging}


def _get(session: Any, alarm_id: int, estate: str, identity: Identity,
         ) -> alarm_board.AlarmRecord:
    record = alarm_board.get_alarm(session, alarm_id, estate_id=estate)
    check_visible(identity, source_facility(record.alarm.source), f"alarm {alarm_id}")
    return record


@router.get("/api/alarms/{alarm_id}")
def alarm(alarm_id: AlarmId, registry: RegistryDep, spec: Spec, identity: Viewer,
          ) -> dict[str, Any]:
    """An alarm with its history (who acknowledged, shelved, commented, and when)."""
    with registry.reading() as session:
        record = _get(session, alarm_id, spec.id, identity)
        steps = alarm_board.alarm_steps(session, alarm_id)[-MAX_STEPS:]
    return {"timezone": spec.timezone, **alarm_view(record, steps)}


@router.post("/api/alarms/{alarm_id}/acknowledge")
def acknowledge(alarm_id: AlarmId, body: Note, registry: RegistryDep, spec: Spec,
                identity: Operator) -> dict[str, Any]:
    """Acknowledge (as ``estate alarms ack``); once acknowledged, again changes nothing."""
    with registry.writing() as session:
        _get(session, alarm_id, spec.id, identity)
        alarm_board.acknowledge_alarm(session, alarm_id, actor(identity), current_time(),
                                      body.note, estate_id=spec.id)
    return alarm(alarm_id, registry, spec, identity)


@router.post("/api/alarms/{alarm_id}/shelve")
def shelve(alarm_id: AlarmId, body: ShelveRequest, registry: RegistryDep, spec: Spec,
           identity: Operator) -> dict[str, Any]:
    """Shelve for ``minutes`` with a reason (as ``estate alarms shelve``): out of the way
    until then, back on the board when the shelf runs out."""
    at = current_time()
    with registry.writing() as session:
        _get(session, alarm_id, spec.id, identity)
        alarm_board.shelve_alarm(session, alarm_id, actor(identity), at,
                                 at + timedelta(minutes=body.minutes), body.reason,
                                 estate_id=spec.id)
    return alarm(alarm_id, registry, spec, identity)


@router.post("/api/alarms/{alarm_id}/unshelve")
def unshelve(alarm_id: AlarmId, registry: RegistryDep, spec: Spec, identity: Operator,
             ) -> dict[str, Any]:
    """Take off the shelf early (as ``estate alarms unshelve``)."""
    with registry.writing() as session:
        _get(session, alarm_id, spec.id, identity)
        alarm_board.unshelve_alarm(session, alarm_id, actor(identity), current_time(),
                                   estate_id=spec.id)
    return alarm(alarm_id, registry, spec, identity)


@router.post("/api/alarms/{alarm_id}/comment")
def comment(alarm_id: AlarmId, body: Comment, registry: RegistryDep, spec: Spec,
            identity: Operator) -> dict[str, Any]:
    """A comment in the alarm's history."""
    with registry.writing() as session:
        _get(session, alarm_id, spec.id, identity)
        alarm_board.comment_alarm(session, alarm_id, actor(identity), current_time(), body.text,
                                  estate_id=spec.id)
    return alarm(alarm_id, registry, spec, identity)
