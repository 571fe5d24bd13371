"""The life of an alarm, as a pure state machine: raised -> acknowledged -> cleared, and
shelving with an expiry, each step with who and when.

::

             acknowledge              clear (telemetry)
    raised ──────────────► acknowledged ──────────────► cleared
      │  ╲                      │                          ▲
      │   ╲ shelve         shelve                          │
      │    ▼                    ▼                          │
      │   shelved ◄─────────────┘  ── clear (telemetry) ───┤
      │     │  unshelve: back to what it was                │
      │     │  expiry: back to raised (annunciated again)   │
      └─────┴───────────────── clear (telemetry) ──────────┘

- Only telemetry clears an alarm (the evaluator that raised it, seeing the condition end):
  an operator who wants it out of sight shelves it, with a reason and an expiry.
- A shelved alarm whose shelf expires while it is still active comes back as ``raised``
  (unacknowledged), so it is put in front of an operator again.
- An alarm raised again while active keeps its state and gets the newer value and message
  (``refresh``); it is the same alarm, not a second one.
- Comments add a step and change nothing else.

Each function returns a new ``Alarm`` or raises ``AlarmStateError`` saying why the step is
not allowed; none does I/O. ``dispatch.registry.control_room`` applies the same functions
to stored alarms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from dispatch.alarms.model import AlarmKey, AlarmTransition, cut
from estate.alarm_rules import Severity
from estate.errors import EstateError

AlarmState = Literal["raised", "acknowledged", "shelved", "cleared"]
ACTIVE_STATES: Final[frozenset[str]] = frozenset({"raised", "acknowledged", "shelved"})
TELEMETRY: Final = "telemetry"
"""Who raises and clears alarms."""

# A shelf longer than a day hides a standing problem from every shift after the one that
# shelved it; longer needs the rule changed, not the alarm shelved.
MAX_SHELVE: Final = timedelta(hours=24)
MAX_NAME: Final = 100
MAX_NOTE: Final = 1000


class AlarmStateError(EstateError, ValueError):
    """A lifecycle step that the alarm's state does not allow."""


@dataclass(frozen=True, slots=True)
class AlarmStep:
    """One step of an alarm's history: ``action`` by ``by`` at ``at``."""

    action: str
    at: datetime
    by: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Alarm:
    source: str
    rule_id: str
    rule_kind: str
    severity: Severity
    state: AlarmState
    value: float | None
    message: str
    raised_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    shelved_at: datetime | None = None
    shelved_by: str | None = None
    shelved_until: datetime | None = None
    shelved_from: AlarmState | None = None
    cleared_at: datetime | None = None
    steps: tuple[AlarmStep, ...] = ()

    @property
    def key(self) -> AlarmKey:
        return (self.source, self.rule_id)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def _who(by: str) -> str:
    name = by.strip()
    if not name:
        raise AlarmStateError("a step needs the name of who takes it")
    return cut(name, MAX_NAME)


def _require(alarm: Alarm, allowed: set[str], what: str) -> None:
    if alarm.state not in allowed:
        raise AlarmStateError(f"alarm {alarm.rule_id} of {alarm.source} is {alarm.state}: "
                              f"it cannot be {what}")


def raise_alarm(transition: AlarmTransition, at: datetime) -> Alarm:
    """A new alarm from a raise transition."""
    if transition.action != "raise":
        raise AlarmStateError("only a raise transition raises an alarm")
    return Alarm(transition.source, transition.rule_id, transition.rule_kind,
                 transition.severity, "raised", transition.value, cut(transition.message),
                 at, steps=(AlarmStep("raised", at, TELEMETRY, cut(transition.message)),))


def refresh(alarm: Alarm, transition: AlarmTransition) -> Alarm:
    """An active alarm raised again: the newer value, message and severity, no new step."""
    _require(alarm, set(ACTIVE_STATES), "raised again")
    return replace(alarm, value=transition.value, message=cut(transition.message),
                   severity=transition.severity)


def acknowledge(alarm: Alarm, by: str, at: datetime, note: str = "") -> Alarm:
    _require(alarm, {"raised"}, "acknowledged")
    who = _who(by)
    return replace(alarm, state="acknowledged", acknowledged_at=at, acknowledged_by=who,
                   steps=(*alarm.steps, AlarmStep("acknowledged", at, who, cut(note, MAX_NOTE))))


def shelve(alarm: Alarm, by: str, at: datetime, until: datetime, reason: str) -> Alarm:
    """Hide an active alarm until ``until`` (at most ``MAX_SHELVE`` ahead), with a reason."""
    _require(alarm, {"raised", "acknowledged"}, "shelved")
    who = _who(by)
    if not reason.strip():
        raise AlarmStateError("shelving needs a reason")
    if until <= at:
        raise AlarmStateError("a shelf must end after it starts")
    if until - at > MAX_SHELVE:
        raise AlarmStateError(f"an alarm is shelved for at most {MAX_SHELVE}")
    return replace(alarm, state="shelved", shelved_at=at, shelved_by=who, shelved_until=until,
                   shelved_from=alarm.state,
                   steps=(*alarm.steps, AlarmStep("shelved", at, who,
                                                  cut(f"until {until.isoformat()}: {reason}",
                                                      MAX_NOTE))))


def unshelve(alarm: Alarm, by: str, at: datetime) -> Alarm:
    """Take an alarm off the shelf early: back to the state it was shelved from."""
    _require(alarm, {"shelved"}, "unshelved")
    who = _who(by)
    return replace(alarm, state=alarm.shelved_from or "raised", shelved_until=None,
                   shelved_from=None, steps=(*alarm.steps, AlarmStep("unshelved", at, who)))


def expire_shelf(alarm: Alarm, now: datetime) -> Alarm:
    """A shelf that has run out: the alarm comes back raised (to be acknowledged again).
    An alarm whose shelf has not run out is returned unchanged."""
    if alarm.state != "shelved" or alarm.shelved_until is None or now < alarm.shelved_until:
        return alarm
    return replace(alarm, state="raised", acknowledged_at=None, acknowledged_by=None,
                   shelved_until=None, shelved_from=None,
                   steps=(*alarm.steps, AlarmStep("shelf-expired", alarm.shelved_until,
                                                  TELEMETRY)))


def clear(alarm: Alarm, at: datetime, transition: AlarmTransition | None = None) -> Alarm:
    """The condition has ended (telemetry says so): the alarm is cleared, whatever step it
    had reached."""
    _require(alarm, set(ACTIVE_STATES), "cleared")
    note = cut(transition.message) if transition is not None else ""
    return replace(alarm, state="cleared", cleared_at=at,
                   value=transition.value if transition is not None else alarm.value,
                   shelved_until=None, shelved_from=None,
                   steps=(*alarm.steps, AlarmStep("cleared", at, TELEMETRY, note)))


def comment(alarm: Alarm, by: str, at: datetime, text: str) -> Alarm:
    who = _who(by)
    if not text.strip():
        raise AlarmStateError("a comment needs text")
    return replace(alarm, steps=(*alarm.steps, AlarmStep("comment", at, who,
                                                         cut(text, MAX_NOTE))))


@dataclass(frozen=True, slots=True)
class BoardChange:
    """What applying a transition did: ``raised`` a new alarm, ``refreshed`` an active one,
    ``cleared`` one, or ``ignored`` (a clear with no active alarm)."""

    outcome: Literal["raised", "refreshed", "cleared", "ignored"]
    alarm: Alarm | None


class AlarmBoard:
    """Active alarms in memory, one per source and rule: the reference the registry's
    stored board follows (``dispatch.registry.control_room``), and a board for tests."""

    def __init__(self) -> None:
        self._active: dict[AlarmKey, Alarm] = {}
        self.history: list[Alarm] = []

    def active(self) -> list[Alarm]:
        return list(self._active.values())

    def get(self, key: AlarmKey) -> Alarm | None:
        return self._active.get(key)

    def apply(self, transition: AlarmTransition, at: datetime) -> BoardChange:
        current = self._active.get(transition.key)
        if transition.action == "raise":
            if current is None:
                alarm = raise_alarm(transition, at)
                self._active[transition.key] = alarm
                return BoardChange("raised", alarm)
            alarm = refresh(current, transition)
            self._active[transition.key] = alarm
            return BoardChange("refreshed", alarm)
        if current is None:
            return BoardChange("ignored", None)
        alarm = clear(current, at, transition)
        del self._active[transition.key]
        self.history.append(alarm)
        return BoardChange("cleared", alarm)

    def update(self, key: AlarmKey, alarm: Alarm) -> None:
        """Store an operator's step on an active alarm (acknowledge, shelve, comment...)."""
        if key not in self._active:
            raise AlarmStateError(f"no active alarm {key[1]} of {key[0]}")
        self._active[key] = alarm

    def expire_shelves(self, now: datetime) -> list[Alarm]:
        """Shelves run out by ``now``: the alarms they return."""
        back = []
        for key, alarm in list(self._active.items()):
            updated = expire_shelf(alarm, now)
            if updated is not alarm:
                self._active[key] = updated
                back.append(updated)
        return back
