"""The shift log and the handover: what is handed over, and who may accept it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.incidents.shiftlog import (
    AlarmSummary,
    IncidentSummary,
    ShiftLogError,
    accept_handover,
    prepare_handover,
    resolve_item,
    write_entry,
)

T = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_handover_carries_the_shift_the_open_items_alarms_and_incidents() -> None:
    old_item = write_entry("1", "demo", "nikos", T - 20 * H, "open_item", "gate 3 lock")
    old_event = write_entry("2", "demo", "nikos", T - 19 * H, "event", "storm")
    done_item = resolve_item(write_entry("3", "demo", "nikos", T - 18 * H, "open_item", "x"),
                             "maria", T + H)
    shift = [write_entry("4", "demo", "maria", T + 2 * H, "action", "reset feeder south"),
             write_entry("5", "demo", "maria", T + 3 * H, "open_item", "call the gas board")]
    alarm = AlarmSummary("utilities/network", "balance", "high", "acknowledged",
                         "water: 3 m3/h unaccounted", T + H)
    incident = IncidentSummary("12", "Water leak", "high", "assigned", "pipes", T + H)
    handover = prepare_handover("h1", "demo", "maria", "kostas", T + 12 * H,
                                [old_item, old_event, done_item, *shift], [alarm],
                                [incident], note="quiet otherwise", since=T)
    assert [e.id for e in handover.entries] == ["1", "4", "5"]
    assert (handover.alarms, handover.incidents) == ((alarm,), (incident,))
    assert not handover.accepted
    with pytest.raises(ShiftLogError, match="for kostas, not maria"):
        accept_handover(handover, "maria", T + 12 * H)
    accepted = accept_handover(handover, "kostas", T + 12 * H + timedelta(minutes=4))
    assert (accepted.outgoing, accepted.prepared_at, accepted.incoming,
            accepted.accepted_at) == ("maria", T + 12 * H, "kostas",
                                      T + 12 * H + timedelta(minutes=4))
    with pytest.raises(ShiftLogError, match="was accepted"):
        accept_handover(accepted, "kostas", T + 13 * H)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: write_entry("1", "d", "m", T, "gossip", "x"), "not 'gossip'"),
    (lambda: write_entry("1", "d", "m", T, "event", "  "), "needs text"),
    (lambda: write_entry("1", "d", " ", T, "event", "x"), "name of who"),
    (lambda: resolve_item(write_entry("1", "d", "m", T, "event", "x"), "m", T),
     "only an open item"),
    (lambda: resolve_item(resolve_item(write_entry("1", "d", "m", T, "open_item", "x"),
                                       "m", T), "n", T), "resolved by m"),
    (lambda: prepare_handover("h", "d", "maria", "maria", T, [], [], []), "another operator"),
    (lambda: accept_handover(prepare_handover("h", "d", "a", "b", T, [], [], []), "b",
                             T - H), "after it is prepared"),
])
def test_mistakes_are_refused(call: object, message: str) -> None:
    with pytest.raises(ShiftLogError, match=message):
        call()  # type: ignore[operator]


def test_long_texts_are_cut() -> None:
    entry = write_entry("1", "d", "m" * 300, T, "event", "x" * 10_000)
    assert (len(entry.by), len(entry.text)) == (100, 2000)
