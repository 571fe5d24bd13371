"""The control room's tables and functions on SQLite and PostgreSQL: every change with its
history and its event in one transaction, and nothing doubled when a change is applied
twice (a worker killed after its commit, replaying)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dispatch.alarms.lifecycle import AlarmStateError
from dispatch.alarms.model import AlarmTransition
from dispatch.incidents.assignment import plan_assignments
from dispatch.incidents.model import IncidentStateError
from dispatch.incidents.shiftlog import ShiftLogError
from dispatch.incidents.triage import AlarmView, Site, triage
from dispatch.registry import alarm_board, crew_roster, incident_desk, outbox, shift_log
from dispatch.registry.control_room import AlarmRow, CrewRow, NetworkNode, OutboxEventRow
from dispatch.registry.db import session_factory, upgrade
from dispatch.registry.loader import load_into_registry
from dispatch.registry.networks import network_links
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate

SPEC = load_estate(SAMPLE_ESTATE)
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday, 10:00 in Athens
MIN = timedelta(minutes=1)
TZ = ZoneInfo(SPEC.timezone)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        load_into_registry(session, SPEC, now=T0)
    return factory


def _t(action: str, source: str, rule: str, at: datetime, value: float = 1.0,
       kind: str = "no_data", severity: str = "high") -> AlarmTransition:
    return AlarmTransition(action, source, rule, kind, severity, value,  # type: ignore[arg-type]
                           f"{rule} {action} at {source}", int(at.timestamp() * 1000))


def _events(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(e.type, e.subject_id) for e in outbox.events(session, SPEC.id)]


def test_networks_and_crews_load_with_the_estate(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        links = network_links(session, SPEC.id)
        crews = crew_roster.crews(session, SPEC.id)
    assert ("power", "units/u04", "utilities/feeder-south") in links
    assert ("water", "utilities/booster", None) in links
    assert len([link for link in links if link[0] == "power"]) == 20
    assert {c.id: c.capacity for c in crews} == {
        "electric-day": 2, "electric-night": 1, "pipes": 2, "gas-on-call": 1, "facilities": 3}
    night = next(c for c in crews if c.id == "electric-night")
    assert night.on_shift(datetime(2026, 12, 8, 1, 0, tzinfo=UTC), TZ)
    # Loading again changes nothing; dropping a crew retires it, dropping a network
    # deletes its nodes.
    with sessions.begin() as session:
        again = load_into_registry(session, SPEC, now=T0)
    assert again.counts["crews"]["added"] == 0
    assert again.counts["networks"]["unchanged"] == 3
    raw = yaml.safe_load(SAMPLE_ESTATE.read_text("utf-8"))
    raw["crews"] = raw["crews"][1:]
    raw["networks"] = [n for n in raw["networks"] if n["id"] != "gas"]
    raw["crews"][0]["shifts"][0]["start"] = "19:00"
    with sessions.begin() as session:
        changed = load_into_registry(session, EstateSpec.model_validate(raw), now=T0)
    assert (changed.counts["crews"]["retired"], changed.counts["crews"]["updated"],
            changed.counts["networks"]["deleted"]) == (1, 1, 1)
    with sessions() as session:
        retired = session.get(CrewRow, (SPEC.id, "electric-day"))
        assert retired is not None
        assert retired.retired_at == T0
        assert session.scalar(select(func.count()).select_from(NetworkNode).where(
            NetworkNode.network_id == "gas")) == 0
        assert not next(c for c in crew_roster.crews(session, SPEC.id)
                        if c.id == "electric-night").on_shift(
            datetime(2026, 12, 7, 16, 30, tzinfo=UTC), TZ)  # 18:30 local: starts at 19:00 now


def test_alarm_lifecycle_with_steps_and_events(sessions: sessionmaker[Session]) -> None:
    raise_ = _t("raise", "textile/gas", "no-data", T0)
    with sessions.begin() as session:
        [change] = alarm_board.record_transitions(session, SPEC.id, [raise_])
    assert change.outcome == "raised"
    assert change.record is not None
    alarm_id = change.record.id
    with sessions.begin() as session:
        [again] = alarm_board.record_transitions(
            session, SPEC.id, [_t("raise", "textile/gas", "no-data", T0 + MIN, value=2.0)])
    assert (again.outcome, again.record.id if again.record else None) == ("refreshed", alarm_id)
    with sessions.begin() as session:
        alarm_board.acknowledge_alarm(session, alarm_id, "maria", T0 + 2 * MIN, "on it")
        alarm_board.acknowledge_alarm(session, alarm_id, "maria", T0 + 3 * MIN)  # again
        alarm_board.comment_alarm(session, alarm_id, "maria", T0 + 4 * MIN, "gateway reboot")
        alarm_board.shelve_alarm(session, alarm_id, "maria", T0 + 5 * MIN, T0 + 65 * MIN,
                                 "gateway being replaced")
    with sessions.begin() as session:
        assert alarm_board.expire_shelves(session, SPEC.id, T0 + 30 * MIN) == []
        [back] = alarm_board.expire_shelves(session, SPEC.id, T0 + 65 * MIN)
        assert back.alarm.state == "raised"
        alarm_board.acknowledge_alarm(session, alarm_id, "nikos", T0 + 66 * MIN)
    with sessions.begin() as session:
        [cleared] = alarm_board.record_transitions(
            session, SPEC.id, [_t("clear", "textile/gas", "no-data", T0 + 70 * MIN)])
        [ignored] = alarm_board.record_transitions(
            session, SPEC.id, [_t("clear", "textile/gas", "no-data", T0 + 71 * MIN)])
    assert (cleared.outcome, ignored.outcome) == ("cleared", "ignored")
    with sessions() as session:
        steps = alarm_board.alarm_steps(session, alarm_id)
        record = alarm_board.get_alarm(session, alarm_id)
        assert alarm_board.active_alarms(session, SPEC.id) == []
    assert [(s.action, s.by, s.at - T0) for s in steps] == [
        ("raised", "telemetry", timedelta(0)), ("acknowledged", "maria", 2 * MIN),
        ("comment", "maria", 4 * MIN), ("shelved", "maria", 5 * MIN),
        ("shelf-expired", "telemetry", 65 * MIN), ("acknowledged", "nikos", 66 * MIN),
        ("cleared", "telemetry", 70 * MIN)]
    assert (record.alarm.state, record.alarm.value, record.alarm.cleared_at) == (
        "cleared", 1.0, T0 + 70 * MIN)
    assert _events(sessions) == [("alarm.raised", str(alarm_id)),
                                 ("alarm.acknowledged", str(alarm_id)),
                                 ("alarm.shelved", str(alarm_id)),
                                 ("alarm.unshelved", str(alarm_id)),
                                 ("alarm.acknowledged", str(alarm_id)),
                                 ("alarm.cleared", str(alarm_id))]
    # A new raise after the clear is a new alarm.
    with sessions.begin() as session:
        [fresh] = alarm_board.record_transitions(
            session, SPEC.id, [_t("raise", "textile/gas", "no-data", T0 + 80 * MIN)])
    assert fresh.record is not None
    assert fresh.record.id != alarm_id
    with sessions.begin() as session, pytest.raises(AlarmStateError, match="is cleared"):
        alarm_board.shelve_alarm(session, alarm_id, "maria", T0, T0 + MIN, "x")


def test_replayed_transitions_double_nothing(sessions: sessionmaker[Session]) -> None:
    batch = [_t("raise", f"units/u0{i}", "no-data", T0) for i in range(1, 6)]
    batch += [_t("raise", "utilities/network", "balance", T0, 3.2, "balance"),
              _t("clear", "units/u03", "no-data", T0 + MIN)]
    for _ in range(3):  # the worker's last batch, applied after each restart
        with sessions.begin() as session:
            alarm_board.record_transitions(session, SPEC.id, batch)
    with sessions() as session:
        active = alarm_board.active_alarms(session, SPEC.id)
        total = session.scalar(select(func.count()).select_from(AlarmRow))
    assert sorted(r.alarm.source for r in active) == [
        "units/u01", "units/u02", "units/u04", "units/u05", "utilities/network"]
    assert active[0].alarm.rule_id in {"no-data", "balance"}
    # u03 was raised then cleared in the first round; the replays raise it anew each time
    # (a raise after a clear is a new alarm) and clear it again.
    assert total == 6 + 2
    types = [t for t, _ in _events(sessions)]
    assert types.count("alarm.raised") == 6 + 2
    assert types.count("alarm.cleared") == 3


def test_one_active_alarm_per_source_and_rule_is_the_databases_rule(
        sessions: sessionmaker[Session]) -> None:
    row = {"estate_id": SPEC.id, "source": "metal/main", "rule_id": "spike",
           "rule_kind": "spike", "severity": "medium", "state": "raised", "active_slot": 1,
           "message": "m", "raised_at": T0, "updated_at": T0}
    with sessions.begin() as session:
        session.execute(insert(AlarmRow).values(**row))
        session.execute(insert(AlarmRow).values(**{**row, "active_slot": None,
                                                   "state": "cleared"}))
        session.execute(insert(AlarmRow).values(**{**row, "active_slot": None,
                                                   "state": "cleared"}))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.execute(insert(AlarmRow).values(**row))


def test_racing_writers_raise_one_alarm_and_one_event(sessions: sessionmaker[Session]) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def record(k: int) -> None:
        try:
            barrier.wait()
            with sessions.begin() as session:
                alarm_board.record_transitions(
                    session, SPEC.id, [_t("raise", "foods/water", "pressure-low", T0,
                                          value=float(k), kind="threshold")])
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sessions() as session:
        assert len(alarm_board.active_alarms(session, SPEC.id)) == 1
    assert [t for t, _ in _events(sessions)] == ["alarm.raised"]


def test_a_failed_transaction_leaves_neither_change_nor_event(
        sessions: sessionmaker[Session]) -> None:
    def crash_before_commit() -> None:
        with sessions.begin() as session:
            alarm_board.record_transitions(session, SPEC.id,
                                           [_t("raise", "textile/gas", "no-data", T0)])
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError, match="crash"):
        crash_before_commit()
    with sessions() as session:
        assert alarm_board.active_alarms(session, SPEC.id) == []
        assert session.scalar(select(func.count()).select_from(OutboxEventRow)) == 0


def _leak(sessions: sessionmaker[Session], at: datetime) -> int:
    with sessions.begin() as session:
        [change] = alarm_board.record_transitions(session, SPEC.id, [_t(
            "raise", "utilities/network", "balance", at, 4.0, "balance")])
    assert change.record is not None
    return change.record.id


def _views(session: Session) -> list[AlarmView]:
    return [AlarmView(str(r.id), r.alarm.source, r.alarm.rule_id, r.alarm.rule_kind,
                      r.alarm.severity, r.alarm.message)
            for r in alarm_board.active_alarms(session, SPEC.id)]


def test_incident_from_an_alarm_to_a_crew_and_closed_when_it_clears(
        sessions: sessionmaker[Session]) -> None:
    alarm_id = _leak(sessions, T0)
    site = Site.of(SPEC)
    for _ in range(2):  # triage twice: one incident
        with sessions.begin() as session:
            actions = triage(_views(session), incident_desk.open_incidents(session, SPEC.id),
                             site)
            incident_desk.apply_triage(session, SPEC.id, actions, T0 + MIN)
    with sessions() as session:
        [incident] = incident_desk.open_incidents(session, SPEC.id)
    assert (incident.origin, incident.skill, incident.alarms) == (
        f"alarm:{alarm_id}", "water", frozenset({("utilities/network", "balance")}))
    for _ in range(2):  # planned and applied twice: one assignment
        with sessions.begin() as session:
            plan = plan_assignments(incident_desk.open_incidents(session, SPEC.id),
                                    crew_roster.crews(session, SPEC.id), T0 + 2 * MIN, TZ)
            incident_desk.apply_assignment_plan(session, SPEC.id, plan, T0 + 2 * MIN)
    with sessions() as session:
        [assigned] = incident_desk.open_incidents(session, SPEC.id)
    assert (assigned.status, assigned.crew) == ("assigned", "pipes")
    with sessions.begin() as session:
        incident_desk.mark_on_site(session, int(incident.id), "pipes", T0 + 20 * MIN)
        assert incident_desk.close_resolved_incidents(session, SPEC.id, T0 + 30 * MIN) == []
    with sessions.begin() as session:
        alarm_board.record_transitions(session, SPEC.id, [_t(
            "clear", "utilities/network", "balance", T0 + 40 * MIN, 0.1, "balance")])
        [closed] = incident_desk.close_resolved_incidents(session, SPEC.id, T0 + 41 * MIN)
        assert incident_desk.close_resolved_incidents(session, SPEC.id, T0 + 42 * MIN) == []
    assert (closed.status, closed.closed_by) == ("closed", "telemetry")
    with sessions() as session:
        steps = [(s.action, s.by) for s in incident_desk.incident_steps(session,
                                                                          int(incident.id))]
    assert steps == [("opened", "telemetry"), ("assigned", "planner"), ("on-site", "pipes"),
                     ("closed", "telemetry")]
    assert [t for t, _ in _events(sessions)] == [
        "alarm.raised", "incident.opened", "incident.assigned", "alarm.cleared",
        "incident.closed"]


def test_operator_override_is_kept_by_the_planner(sessions: sessionmaker[Session]) -> None:
    _leak(sessions, T0)
    with sessions.begin() as session:
        incident_desk.apply_triage(session, SPEC.id, triage(_views(session), [],
                                                            Site.of(SPEC)), T0)
        [incident] = incident_desk.open_incidents(session, SPEC.id)
        incident_desk.assign_crew(session, int(incident.id), "gas-on-call", "maria", T0 + MIN)
        incident_desk.assign_crew(session, int(incident.id), "gas-on-call", "maria", T0 + MIN)
    with sessions.begin() as session:
        plan = plan_assignments(incident_desk.open_incidents(session, SPEC.id),
                                crew_roster.crews(session, SPEC.id), T0 + 2 * MIN, TZ)
        assert plan.changes() == []
        incident_desk.apply_assignment_plan(session, SPEC.id, plan, T0 + 2 * MIN)
        [kept] = incident_desk.open_incidents(session, SPEC.id)
    assert (kept.crew, kept.pinned) == ("gas-on-call", True)
    with sessions.begin() as session, pytest.raises(IncidentStateError, match="needs a reason"):
        incident_desk.close_incident(session, int(kept.id), "maria", T0 + 3 * MIN, "")
    with sessions.begin() as session:
        closed = incident_desk.close_incident(session, int(kept.id), "maria", T0 + 3 * MIN,
                                              "duplicate of the gas board's job")
        again = incident_desk.close_incident(session, int(kept.id), "nikos", T0 + 4 * MIN,
                                             "x")
    assert (closed.closed_by, again.closed_by) == ("maria", "maria")
    assert [t for t, _ in _events(sessions)].count("incident.assigned") == 1
    with sessions.begin() as session:
        by_hand = incident_desk.open_incident_by_operator(
            session, SPEC.id, "req-1", "Smell of gas at unit 7", "critical", "gas", "maria",
            T0, facility="units", position=(380, 40))
        twice = incident_desk.open_incident_by_operator(
            session, SPEC.id, "req-1", "Smell of gas at unit 7", "critical", "gas", "maria",
            T0)
    assert by_hand.id == twice.id
    assert by_hand.respond_by - T0 == timedelta(minutes=15)


def test_shift_log_and_handover(sessions: sessionmaker[Session]) -> None:
    _leak(sessions, T0)
    with sessions.begin() as session:
        shift_log.write_log_entry(session, SPEC.id, "maria", T0, "event", "storm warning",
                                  key="k1")
        shift_log.write_log_entry(session, SPEC.id, "maria", T0, "event", "storm warning",
                                  key="k1")
        item = shift_log.write_log_entry(session, SPEC.id, "maria", T0 + MIN, "open_item",
                                         "call the water board")
        handover = shift_log.prepare_handover(session, SPEC.id, "maria", "kostas",
                                              T0 + 8 * timedelta(hours=1), "quiet")
        same = shift_log.prepare_handover(session, SPEC.id, "maria", "kostas",
                                          T0 + 8 * timedelta(hours=1))
        assert same.id == handover.id
        with pytest.raises(ShiftLogError, match="waiting to be accepted"):
            shift_log.prepare_handover(session, SPEC.id, "maria", "eleni", T0)
    assert [e.text for e in handover.entries] == ["storm warning", "call the water board"]
    assert [a.rule_id for a in handover.alarms] == ["balance"]
    with sessions.begin() as session, pytest.raises(ShiftLogError, match="not maria"):
        shift_log.accept_handover(session, int(handover.id), "maria", T0 + 9 * timedelta(
            hours=1))
    with sessions.begin() as session:
        accepted = shift_log.accept_handover(session, int(handover.id), "kostas",
                                             T0 + 8 * timedelta(hours=1) + 3 * MIN)
        shift_log.accept_handover(session, int(handover.id), "kostas", T0 + 9 * timedelta(
            hours=1))
        shift_log.resolve_log_item(session, int(item.id), "kostas", T0 + 9 * timedelta(
            hours=1))
        assert shift_log.pending_handover(session, SPEC.id) is None
        stored = shift_log.get_handover(session, int(handover.id))
    assert (stored.outgoing, stored.prepared_at, stored.incoming, stored.accepted_at) == (
        "maria", T0 + 8 * timedelta(hours=1), "kostas", accepted.accepted_at)
    assert stored.entries == handover.entries
    with sessions.begin() as session:
        nxt = shift_log.prepare_handover(session, SPEC.id, "kostas", "maria",
                                         T0 + 20 * timedelta(hours=1))
    assert nxt.entries == ()  # nothing since, and the item was resolved
    assert [t for t, _ in _events(sessions)] == [
        "alarm.raised", "handover.prepared", "handover.accepted", "handover.prepared"]


def test_outbox_delivery_bookkeeping(sessions: sessionmaker[Session]) -> None:
    _leak(sessions, T0)
    with sessions.begin() as session:
        alarm_board.record_transitions(session, SPEC.id, [_t("raise", "textile/gas",
                                                             "no-data", T0)])
    with sessions.begin() as session:
        waiting = outbox.pending_events(session)
        assert [e.type for e in waiting] == ["alarm.raised", "alarm.raised"]
        assert waiting[0].payload["source"] == "utilities/network"
        assert waiting[0].payload["type"] == "alarm.raised"
        outbox.record_failure(session, waiting[0].id, "503 " + "x" * 5000)
        assert outbox.mark_delivered(session, [waiting[1].id], T0 + MIN) == 1
        assert outbox.mark_delivered(session, [waiting[1].id], T0 + MIN) == 0
    with sessions() as session:
        [left] = outbox.pending_events(session)
        assert left.attempts == 1
        with pytest.raises(ValueError, match="unknown event type"):
            outbox.add_event(session, SPEC.id, "alarm.exploded", "alarm", "1", {}, T0, "k")
