"""``GET /api/overview`` in process: the estate per utility from the live values, the
network trees and the registry's active alarms; a tenant's account sees its facility."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson

from dispatch.alarms.model import AlarmTransition
from dispatch.registry.alarm_board import record_transitions
from dispatch.registry.alarm_counts import active_alarm_counts
from dispatch.web.utilities import layouts
from estate.ports import InboundMessage
from estate.readings import Reading
from estate.senml import encode_readings
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC
from tests.dispatch.web.access import TENANT_FACILITY, WebRoom


def _publish(room: WebRoom, facility: str, device: str, quantity: str, value: float,
             at_ms: int | None = None) -> None:
    ident = DeviceId(SPEC.id, facility, device)
    at = at_ms if at_ms is not None else time.time_ns() // 1_000_000
    payload = encode_readings(ident, [Reading(SPEC.id, facility, device, quantity, "",
                                              value, at)])
    room.live.handle(InboundMessage(ident.topic(Channel.TELEMETRY), payload, 0, False, 0))


def _status(room: WebRoom, facility: str, device: str, state: str) -> None:
    ident = DeviceId(SPEC.id, facility, device)
    room.live.handle(InboundMessage(ident.topic(Channel.STATUS),
                                    orjson.dumps({"state": state}), 0, True, 0))


def _raise(room: WebRoom, source: str, severity: str) -> None:
    now_ms = time.time_ns() // 1_000_000
    with room.registry.writing() as session:
        record_transitions(session, SPEC.id, [AlarmTransition(
            "raise", source, f"rule-{severity}", "threshold", severity, 1.0, "test",
            now_ms)])  # type: ignore[arg-type]


def _utility(body: dict, name: str) -> dict:
    return next(u for u in body["utilities"] if u["utility"] == name)


def _facility(utility: dict, facility: str) -> dict:
    return next(f for f in utility["facilities"] if f["id"] == facility)


def test_the_import_is_the_network_roots_and_each_facility_its_incomers(room: WebRoom) -> None:
    _publish(room, "utilities", "grid", "power", 1800.0)
    _publish(room, "textile", "main", "power", 400.0)
    _publish(room, "textile", "looms", "power", 999.0)  # a sub-meter: inside main
    for unit in ("u01", "u02"):
        _publish(room, "units", unit, "power", 10.0)
    _publish(room, "utilities", "booster", "water_flow", 12.5)
    _publish(room, "utilities", "network", "water_flow", 99.0)  # below the booster
    body = room.login("vera").get("/api/overview").json()
    assert (body["estate"], body["name"], body["timezone"]) == (SPEC.id, SPEC.name,
                                                              SPEC.timezone)
    assert body["feed"]["age_s"] is not None
    assert body["feed"]["age_s"] < 30
    assert body["feed"]["connected"] is True
    assert body["feed"]["stale"] is False
    electricity = _utility(body, "electricity")
    assert electricity["import"]["value"] == 1800.0
    assert electricity["import"]["unit"] == "kW"
    assert electricity["contracted"] == {"value": SPEC.contracted_capacity_kw, "unit": "kW"}
    textile = _facility(electricity, "textile")
    assert (textile["value"], textile["state"], textile["active_alarms"]) == (400.0, "ok", 0)
    units = _facility(electricity, "units")
    assert units["value"] == 20.0
    assert units["state"] == "ok"
    assert _facility(electricity, "foods")["state"] == "stale"  # nothing from it yet
    water = _utility(body, "water")
    assert water["import"]["value"] == 12.5
    assert water["contracted"] is None
    assert _facility(water, "utilities")["value"] == 12.5
    assert {f["id"] for f in water["facilities"]} == {"textile", "foods", "utilities",
                                                      "units"}  # metal has no water meter
    assert {u["utility"] for u in body["utilities"]} == {"electricity", "water", "gas"}


def test_states_stale_offline_and_alarm_with_the_worst_severity(room: WebRoom) -> None:
    old_ms = time.time_ns() // 1_000_000 - 120_000  # older than the 60 s stale time
    _publish(room, "foods", "main", "power", 300.0, at_ms=old_ms)
    _publish(room, "metal", "gas", "gas_flow", 4.0)
    _status(room, "metal", "gas", "offline")
    _publish(room, "textile", "main", "power", 400.0)
    _raise(room, "textile/dyehouse-temp", "low")
    _raise(room, "facility:textile", "high")
    _raise(room, "textile/looms", "medium")
    viewer = room.login("vera")
    body = viewer.get("/api/overview").json()
    electricity = _utility(body, "electricity")
    assert _facility(electricity, "foods")["state"] == "stale"
    assert _facility(electricity, "foods")["at"].startswith(
        datetime.fromtimestamp(old_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M"))
    assert _facility(_utility(body, "gas"), "metal")["state"] == "offline"
    textile = _facility(electricity, "textile")
    assert (textile["state"], textile["active_alarms"], textile["worst_severity"]) == (
        "alarm", 3, "high")
    # Every utility of the facility carries its alarms: they are the facility's.
    assert _facility(_utility(body, "gas"), "textile")["state"] == "alarm"
    counts = active_alarm_counts(room.registry, SPEC.id)
    assert counts["facility:textile"].worst_severity == "high"


def test_a_tenant_sees_its_facility_without_the_estate_figures(room: WebRoom) -> None:
    _publish(room, "utilities", "grid", "power", 1800.0)
    body = room.login("tina").get("/api/overview").json()
    for utility in body["utilities"]:
        assert utility["import"] is None
        assert utility["contracted"] is None
        assert {f["id"] for f in utility["facilities"]} <= {TENANT_FACILITY}
    assert _utility(body, "electricity")["facilities"][0]["id"] == TENANT_FACILITY
    assert room.client().get("/api/overview").status_code == 401


def test_a_feed_that_brought_nothing_is_stale(room: WebRoom) -> None:
    body = room.login("vera").get("/api/overview").json()
    assert body["feed"] == {"connected": True, "age_s": None, "stale": True}


def test_layout_of_an_estate_without_networks_has_no_import() -> None:
    bare = SPEC.model_copy(update={"networks": []})
    bare._trees = []  # the description without its network trees
    for layout in layouts(bare):
        assert layout.imports == ()
    electricity = next(lay for lay in layouts(bare) if lay.utility == "electricity")
    assert next(d for d in electricity.facilities if d.id == "textile").meters == ("main",)
