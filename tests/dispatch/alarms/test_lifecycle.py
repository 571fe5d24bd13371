"""The alarm lifecycle: raised -> acknowledged -> cleared, shelving with an expiry, who and
when at each step, one active alarm per source and rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.alarms.lifecycle import (
    AlarmBoard,
    AlarmStateError,
    acknowledge,
    clear,
    comment,
    expire_shelf,
    raise_alarm,
    shelve,
    unshelve,
)
from dispatch.alarms.model import AlarmTransition

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _t(action: str = "raise", value: float = 5.0, source: str = "utilities/network",
       rule: str = "balance") -> AlarmTransition:
    return AlarmTransition(action, source, rule, "balance", "high", value,  # type: ignore[arg-type]
                           f"residual {value}", 0)


def test_the_ordinary_life_of_an_alarm() -> None:
    alarm = raise_alarm(_t(), NOW)
    assert (alarm.state, alarm.active, alarm.key) == ("raised", True,
                                                      ("utilities/network", "balance"))
    alarm = acknowledge(alarm, "maria", NOW + MIN, "crew informed")
    alarm = comment(alarm, "maria", NOW + 2 * MIN, "valve 3 suspected")
    alarm = clear(alarm, NOW + 30 * MIN, _t("clear", 0.1))
    assert (alarm.state, alarm.active, alarm.value) == ("cleared", False, 0.1)
    assert [(s.action, s.by, s.at - NOW) for s in alarm.steps] == [
        ("raised", "telemetry", timedelta(0)), ("acknowledged", "maria", MIN),
        ("comment", "maria", 2 * MIN), ("cleared", "telemetry", 30 * MIN)]
    assert alarm.acknowledged_by == "maria"
    assert alarm.steps[1].note == "crew informed"


def test_shelving_hides_until_the_expiry_then_brings_it_back_unacknowledged() -> None:
    alarm = acknowledge(raise_alarm(_t(), NOW), "maria", NOW)
    shelved = shelve(alarm, "maria", NOW + MIN, NOW + 2 * timedelta(hours=1), "crew on site")
    assert shelved.state == "shelved"
    assert shelved.active
    assert expire_shelf(shelved, NOW + timedelta(hours=1)) is shelved
    back = expire_shelf(shelved, NOW + timedelta(hours=3))
    assert back.state == "raised"
    assert back.acknowledged_by is None
    assert back.steps[-1].action == "shelf-expired"
    assert unshelve(shelved, "nikos", NOW + 5 * MIN).state == "acknowledged"
    assert clear(shelved, NOW + 10 * MIN).state == "cleared"


@pytest.mark.parametrize(("step", "message"), [
    (lambda a: acknowledge(acknowledge(a, "x", NOW), "y", NOW), "is acknowledged"),
    (lambda a: clear(clear(a, NOW), NOW), "is cleared"),
    (lambda a: acknowledge(clear(a, NOW), "x", NOW), "is cleared"),
    (lambda a: unshelve(a, "x", NOW), "cannot be unshelved"),
    (lambda a: shelve(a, "x", NOW, NOW, "r"), "must end after it starts"),
    (lambda a: shelve(a, "x", NOW, NOW + timedelta(hours=25), "r"), "at most"),
    (lambda a: shelve(a, "x", NOW, NOW + MIN, "  "), "needs a reason"),
    (lambda a: acknowledge(a, " ", NOW), "name of who"),
    (lambda a: comment(a, "x", NOW, ""), "needs text"),
])
def test_steps_the_state_does_not_allow(step: object, message: str) -> None:
    with pytest.raises(AlarmStateError, match=message):
        step(raise_alarm(_t(), NOW))  # type: ignore[operator]


def test_names_and_notes_are_cut_to_a_bound() -> None:
    alarm = comment(raise_alarm(_t(), NOW), "x" * 500, NOW, "y" * 5000)
    assert len(alarm.steps[-1].by) == 100
    assert len(alarm.steps[-1].note) == 1000


def test_board_keeps_one_active_alarm_per_source_and_rule() -> None:
    board = AlarmBoard()
    assert board.apply(_t(value=5), NOW).outcome == "raised"
    change = board.apply(_t(value=7), NOW + MIN)
    assert (change.outcome, change.alarm.value if change.alarm else None) == ("refreshed", 7)
    assert len(board.active()) == 1
    assert board.apply(_t(rule="no-data"), NOW).outcome == "raised"
    assert len(board.active()) == 2
    assert board.apply(_t("clear"), NOW + 2 * MIN).outcome == "cleared"
    assert board.apply(_t("clear"), NOW + 3 * MIN).outcome == "ignored"
    assert board.apply(_t(), NOW + 4 * MIN).outcome == "raised"  # a new alarm
    assert len(board.history) == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["raise", "clear"]),
                          st.sampled_from(["a/1", "a/2"]),
                          st.sampled_from(["r1", "r2"])), max_size=60))
def test_whatever_the_sequence_at_most_one_active_alarm_per_key(
        steps: list[tuple[str, str, str]]) -> None:
    board = AlarmBoard()
    active: set[tuple[str, str]] = set()
    for k, (action, source, rule) in enumerate(steps):
        board.apply(_t(action, float(k), source, rule), NOW + k * MIN)
        if action == "raise":
            active.add((source, rule))
        else:
            active.discard((source, rule))
        keys = [a.key for a in board.active()]
        assert len(keys) == len(set(keys))
        assert set(keys) == active
    raised = sum(1 for s in [*board.history, *board.active()])
    assert raised == len(board.history) + len(active)


def test_board_expires_shelves() -> None:
    board = AlarmBoard()
    alarm = board.apply(_t(), NOW).alarm
    assert alarm is not None
    board.update(alarm.key, shelve(alarm, "maria", NOW, NOW + timedelta(hours=2), "works"))
    assert board.expire_shelves(NOW + timedelta(hours=1)) == []
    back = board.expire_shelves(NOW + timedelta(hours=2))
    assert [a.state for a in back] == ["raised"]
    with pytest.raises(AlarmStateError, match="no active alarm"):
        board.update(("x/y", "r"), alarm)
