"""Plan assembly and a whole plan run, fast: the registry is a real SQLite file, the store
and the broker are the in-memory doubles of our own ports (tests/doubles.py). The same
against the real InfluxDB and Mosquitto, fed by the simulator: tests/dispatch/test_planning.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatch.control.sender import CommandSender
from dispatch.jobs.rollup_levels import READING_15M
from dispatch.planning.assembly import SHARED, assemble
from dispatch.planning.forecasts import FORECAST_POLICY, QUANTITY
from dispatch.planning.plan_series import PLAN_POLICY
from dispatch.planning.rolling import PlanJob
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.estate_store import planning_inputs
from dispatch.registry.models import AssetRow
from dispatch.registry.plan_store import PlanStore
from dispatch.settings import PlanningSettings
from estate.errors import PlanningError
from estate.ports import SeriesRef, Where
from estate.schema import FORECASTS, PLANS
from estate.stored import RAW_READINGS
from estate.topics import Channel, DeviceId
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryMessaging, InMemoryTimeSeriesStore

# A Thursday morning in Athens, 2026-11-26 09:07 local (07:07 UTC).
NOW_MS = int(datetime(2026, 11, 26, 7, 7, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 15 * 60_000
START_MS = NOW_MS - NOW_MS % STEP_MS + STEP_MS
SETTINGS = PlanningSettings(horizon_steps=8, time_limit_s=20)
FORECAST = SeriesRef(FORECASTS, FORECAST_POLICY)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = sample_registry(tmp_path)
    yield registry
    registry.close()


def _forecast(store: InMemoryTimeSeriesStore, facility: str, kw: float, steps: int) -> None:
    for k in range(steps):
        store.put(FORECAST, {"estate": SPEC.id, "facility": facility, "quantity": QUANTITY},
                  {"value": kw, "issued_ms": NOW_MS - 60_000, "method": "profile+level"},
                  START_MS + k * STEP_MS)


def test_base_loads_come_from_the_forecasts_and_a_missing_step_is_a_note(
        registry: Registry) -> None:
    store = InMemoryTimeSeriesStore()
    _forecast(store, "textile", 500.0, SETTINGS.horizon_steps)
    _forecast(store, "foods", 300.0, SETTINGS.horizon_steps - 2)  # two steps short
    assembly = assemble(planning_inputs(registry, SPEC.id), store, SETTINGS, NOW_MS,
                        {"foods": 540.0, "metal": 780.0})
    problem = assembly.problem
    assert assembly.start_ms == START_MS
    assert problem.facilities == ("foods", "metal", "textile", "units", "utilities", SHARED)
    base = dict(zip(problem.facilities, problem.base_load_kw, strict=True))
    assert list(base["textile"]) == [500.0] * 8
    # Without telemetry the chillers hold no demand, so nothing is taken off the forecast.
    assert list(base["foods"]) == [300.0] * 6 + [540.0] * 2
    assert list(base["metal"]) == [780.0] * 8, "no forecast at all: the nominal load"
    assert list(base[SHARED]) == [0.0] * 8
    assert any("no stored forecast for 2 of 8 steps" in n for n in assembly.notes)
    assert assembly.currency == "EUR"


def test_the_batterys_state_of_charge_and_this_months_peak_come_from_the_store(
        registry: Registry) -> None:
    store = InMemoryTimeSeriesStore()
    battery = {"estate": SPEC.id, "facility": "utilities", "device": "battery"}
    store.put(RAW_READINGS, battery, {"state_of_charge": 40.0, "power": -20.0},
              NOW_MS - 120_000)
    store.put(RAW_READINGS, battery, {"state_of_charge": 80.0}, NOW_MS - 7_200_000)  # stale
    for facility, kw in (("textile", 900.0), ("foods", 700.0)):
        store.put(READING_15M.series, {"estate": SPEC.id, "facility": facility,
                                       "device": "main", "quantity": "power"},
                  {"mean": kw}, START_MS - 10 * STEP_MS)
    assembly = assemble(planning_inputs(registry, SPEC.id), store, SETTINGS, NOW_MS)
    [batt] = assembly.problem.batteries
    assert batt.soc_initial_kwh == pytest.approx(400.0)  # 40 % of 1,000 kWh
    assert assembly.problem.prior_peak_kw == pytest.approx(1600.0)
    assert not any("state of charge" in n for n in assembly.notes)


def test_without_telemetry_every_assumption_is_a_note(registry: Registry) -> None:
    assembly = assemble(planning_inputs(registry, SPEC.id), InMemoryTimeSeriesStore(),
                        SETTINGS, NOW_MS)
    notes = "\n".join(assembly.notes)
    assert "no state of charge in the last hour; 550 kWh (half way) assumed" in notes
    assert "no PV forecast; a clear-sky day assumed" in notes
    assert "tank level not measured; half full assumed" in notes
    assert assembly.problem.prior_peak_kw == 0.0
    commandable = {a.id for a in assembly.assets if a.commandable}
    assert "battery" in commandable
    assert "metal-roof-pv" not in commandable


def test_an_estate_the_registry_does_not_hold_is_a_planning_error(registry: Registry) -> None:
    with pytest.raises(PlanningError, match="not in the registry"):
        planning_inputs(registry, "elsewhere")


def test_a_plan_run_stores_the_plan_and_its_series_and_commands_auto_assets(
        registry: Registry) -> None:
    with registry.writing() as session:  # the battery alone runs without an operator
        battery_row = session.get(AssetRow, (SPEC.id, "battery"))
        assert battery_row is not None
        battery_row.control_mode = "auto"
    store, messaging = InMemoryTimeSeriesStore(), InMemoryMessaging()
    for facility in ("textile", "foods", "metal", "utilities"):
        _forecast(store, facility, 400.0, SETTINGS.horizon_steps)
    sender = CommandSender(messaging, CommandStore(registry), estates=[SPEC.id],
                           clock=lambda: NOW_MS)
    sender.start()
    job = PlanJob(store, registry, SPEC.id, SETTINGS, sender=sender,
                  nominal_kw={"textile": 620.0})
    outcome = job.run(now_ms=NOW_MS)
    sender.close()
    assert outcome is not None
    assert outcome.saved.written
    assert outcome.saved.status == "draft", "other assets still wait for an operator"
    plan = PlanStore(registry).setpoints(outcome.saved.id)
    assert len(plan.setpoints["battery"]) == SETTINGS.horizon_steps
    points = store.points(SeriesRef(PLANS, PLAN_POLICY), None,
                          where=Where({"estate": SPEC.id, "asset": "battery",
                                       "quantity": "setpoint"}))
    assert [p.time_ms for p in points] == [START_MS + k * STEP_MS for k in range(8)]
    assert {p.fields["plan_id"] for p in points} == {outcome.saved.id}
    # One command, for the battery, to its device, with the plan's first step.
    [request] = messaging.published
    battery = DeviceId(SPEC.id, "utilities", "battery")
    assert request.topic == battery.topic(Channel.COMMAND_REQUEST)
    assert request.correlation_data is not None
    assert outcome.commands == (request.correlation_data.decode(),)
    assert json.loads(request.payload)["params"]["kw"] == pytest.approx(
        float(plan.setpoints["battery"][0]), abs=0.05)
    again = job.run(now_ms=NOW_MS + 1000)
    assert again is not None
    assert again.saved.id == outcome.saved.id
    assert again.saved.revision == 2, "the same quarter-hour: the draft planned again"
