"""The shift log and the handover in the web view. Operators write entries (an event, an
action, an open item) and resolve open items; at the end of a shift the outgoing operator
(the logged-in user) prepares the handover to the incoming one, who accepts it after
acknowledging each active alarm and open incident handed over. Both names and both times
are kept.

The same registry functions as ``estate shift`` (``dispatch.registry.shift_log``). The
log and the handover are the estate's control room's: an account bound to a facility is
refused (403). A step the log refuses (a handover already waiting, one for someone else,
an item not acknowledged) is 409 with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts.roles import Role
from dispatch.incidents.shiftlog import MAX_TEXT, Handover, LogEntry
from dispatch.registry import shift_log
from dispatch.registry.account_desk import Identity, get_user
from dispatch.registry.outbox import iso
from dispatch.web.auth import Operator, Viewer, whole_estate
from dispatch.web.deps import RegistryDep, Spec
from dispatch.web.room_views import Limit, Offset, actor, current_time, page
from estate.errors import AccountNotFound

router = APIRouter(tags=["shift log"])

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
LOG: Final = "the shift log and the handover"
# The entries read for the log page: a shift writes tens; older ones are paged.
MAX_ENTRIES_READ: Final = 5000
MAX_ITEMS: Final = 10_000


class NewEntry(BaseModel):
    """An entry; ``key`` (optional) makes the request idempotent."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["event", "action", "open_item"] = "event"
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")
    key: str | None = Field(None, min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class NewHandover(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incoming: str = Field(min_length=1, max_length=64, description="the incoming "
                          "operator's user name")
    note: str = Field("", max_length=MAX_TEXT)


class Acceptance(BaseModel):
    """Each alarm and incident handed over (``items[].key`` of the handover),
    acknowledged by the incoming operator."""

    model_config = ConfigDict(extra="forbid")

    acknowledged: list[Annotated[str, Field(max_length=400)]] = Field(max_length=MAX_ITEMS)


def _entry(e: LogEntry) -> dict[str, Any]:
    return {"id": int(e.id), "at": iso(e.at), "by": e.by, "kind": e.kind, "text": e.text,
            "open": e.open, "resolved_at": iso(e.resolved_at), "resolved_by": e.resolved_by}


def _handover(h: Handover) -> dict[str, Any]:
    keys = h.item_keys()
    acknowledged = set(h.acknowledged)
    alarms = [{"key": k, "source": a.source, "rule_id": a.rule_id, "severity": a.severity,
               "state": a.state, "message": a.message, "raised_at": iso(a.raised_at),
               "acknowledged": k in acknowledged}
              for k, a in zip(keys, h.alarms, strict=False)]
    incidents = [{"key": k, "id": int(i.id), "title": i.title, "severity": i.severity,
                  "status": i.status, "crew": i.crew, "opened_at": iso(i.opened_at),
                  "acknowledged": k in acknowledged}
                 for k, i in zip(keys[len(h.alarms):], h.incidents, strict=True)]
    return {"id": int(h.id), "outgoing": h.outgoing, "incoming": h.incoming,
            "prepared_at": iso(h.prepared_at), "accepted_at": iso(h.accepted_at),
            "accepted": h.accepted, "note": h.note,
            "entries": [_entry(e) for e in h.entries], "alarms": alarms,
            "incidents": incidents}


def _estate_only(identity: Identity) -> None:
    whole_estate(identity, LOG)


@router.get("/api/shift/log")
def log(registry: RegistryDep, spec: Spec, identity: Viewer, limit: Limit = 100,
        offset: Offset = 0) -> dict[str, Any]:
    """The entries since the last accepted handover and every open item, the newest
    first."""
    _estate_only(identity)
    with registry.reading() as session:
        accepted = [h.accepted_at for h in shift_log.recent_handovers(session, spec.id, 20)
                    if h.accepted_at is not None]
        entries = shift_log.log_entries(session, spec.id, since=max(accepted, default=None),
                                        limit=MAX_ENTRIES_READ)
    chosen, paging = page(entries[::-1], limit, offset)
    return {"estate": spec.id, "timezone": spec.timezone,
            "entries": [_entry(e) for e in chosen], **paging}


@router.post("/api/shift/log", status_code=201)
def write(body: NewEntry, registry: RegistryDep, spec: Spec, identity: Operator,
          ) -> dict[str, Any]:
    """Write an entry under the logged-in user's name (as ``estate shift log --text``)."""
    _estate_only(identity)
    with registry.writing() as session:
        entry = shift_log.write_log_entry(session, spec.id, actor(identity), current_time(),
                                          body.kind, body.text, body.key)
    return _entry(entry)


@router.post("/api/shift/log/{entry_id}/resolve")
def resolve(entry_id: Id, registry: RegistryDep, spec: Spec, identity: Operator,
            ) -> dict[str, Any]:
    """Resolve an open item (as ``estate shift log --resolve``)."""
    _estate_only(identity)
    with registry.writing() as session:
        entry = shift_log.resolve_log_item(session, entry_id, actor(identity), current_time(),
                                           estate_id=spec.id)
    return _entry(entry)


@router.get("/api/shift/handover")
def handovers(registry: RegistryDep, spec: Spec, identity: Viewer) -> dict[str, Any]:
    """The handover waiting (if any), and the newest handovers with both names and
    times."""
    _estate_only(identity)
    with registry.reading() as session:
        waiting = shift_log.pending_handover(session, spec.id)
        recent = shift_log.recent_handovers(session, spec.id, 10)
    return {"estate": spec.id, "timezone": spec.timezone,
            "waiting": None if waiting is None else _handover(waiting),
            "recent": [{"id": int(h.id), "outgoing": h.outgoing, "incoming": h.incoming,
                        "prepared_at": iso(h.prepared_at), "accepted_at": iso(h.accepted_at),
                        "items": len(h.item_keys()), "acknowledged": len(h.acknowledged)}
                       for h in recent]}


@router.post("/api/shift/handover", status_code=201)
def prepare(body: NewHandover, registry: RegistryDep, spec: Spec, identity: Operator,
            ) -> dict[str, Any]:
    """The logged-in operator hands the shift over to ``incoming`` (an operator or
    above, of the whole estate): the shift's entries, the open items, the active alarms
    and the open incidents as they stand."""
    _estate_only(identity)
    try:
        incoming = get_user(registry, body.incoming)
    except AccountNotFound as exc:
        raise HTTPException(422, f"no user {body.incoming!r} to hand over to") from exc
    if incoming.disabled or incoming.role < Role.OPERATOR or incoming.facility is not None:
        raise HTTPException(422, f"{incoming.username} cannot take the shift: it needs an "
                                 "active operator account of the whole estate")
    with registry.writing() as session:
        made = shift_log.prepare_handover(session, spec.id, actor(identity),
                                          incoming.username, current_time(), body.note)
    return _handover(made)


@router.get("/api/shift/handover/{handover_id}")
def handover(handover_id: Id, registry: RegistryDep, spec: Spec, identity: Viewer,
             ) -> dict[str, Any]:
    """A handover with everything in it, and what was acknowledged in accepting it."""
    _estate_only(identity)
    with registry.reading() as session:
        return _handover(shift_log.get_handover(session, handover_id, estate_id=spec.id))


@router.post("/api/shift/handover/{handover_id}/accept")
def accept(handover_id: Id, body: Acceptance, registry: RegistryDep, spec: Spec,
           identity: Operator) -> dict[str, Any]:
    """The incoming operator (the logged-in user, the one named) accepts, acknowledging
    each alarm and incident handed over."""
    _estate_only(identity)
    with registry.writing() as session:
        accepted = shift_log.accept_handover(session, handover_id, actor(identity), current_time(),
                                             estate_id=spec.id,
                                             acknowledged=body.acknowledged)
    return _handover(accepted)
