"""The rolling re-plan against the real InfluxDB and a registry on SQLite: problem assembly
from the registry and the stored forecasts, the plan stored (row + series) with its
baseline comparison, idempotent re-runs, and the worker's scheduler planning on its own
while the simulator feeds Mosquitto and ingest writes InfluxDB."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import func, select, update

from adapters.influxdb_v1 import InfluxV1Store
from adapters.influxql import Series
from dispatch.__main__ import run_worker
from dispatch.optimiser.problem import Asset as OptimiserAsset
from dispatch.planning.assembly import SHARED, horizon_start_ms
from dispatch.planning.demand_model import STEP_MS
from dispatch.planning.forecasts import ESTATE_SCOPE, ForecastJob, nominal_kw
from dispatch.planning.plan_series import PLAN_POLICY
from dispatch.planning.problem_assets import clear_sky_kw, deferrable_window
from dispatch.planning.rolling import PlanJob
from dispatch.registry.db import Registry, make_engine, upgrade
from dispatch.registry.loader import load_into_registry
from dispatch.registry.models import AssetRow, AuditRow, CommandRow, PlanRow
from dispatch.settings import DispatchSettings, ForecastSettings, PlanningSettings
from edge.command_executors import SimulatedBattery
from edge.publisher import Publisher, publish_range, run_realtime
from edge.simulator import EstateSimulator
from estate.assets import DeferrableLoadSpec
from estate.model import SAMPLE_ESTATE, load_estate
from estate.schema import PLANS
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import DeviceId
from tests.devices import simulated_battery
from tests.dispatch.optimiser.checker import check
from tests.dispatch.test_forecasting import RAW_HOURS, demand, now_quarter, write_history

SPEC = load_estate(SAMPLE_ESTATE)
SETTINGS = PlanningSettings(time_limit_s=30)


ATHENS = ZoneInfo(SPEC.timezone)
DYE_BATCH = next(a for a in SPEC.assets if a.id == "dye-batch")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ATHENS)


@pytest.mark.parametrize(("start", "days", "expected"), [
    # Monday noon: the night window 22:00-06:00 lies wholly in the next 24 hours.
    ("2026-11-23T12:00", None, (40, 72, 1.0)),
    # Monday 23:00: the window opened an hour ago; 7 of its 8 hours are left.
    ("2026-11-23T23:00", None, (0, 28, 7 / 8)),
    # Saturday noon: no weekday window before Sunday noon.
    ("2026-11-28T12:00", None, None),
    # Saturday windows across the changes of the clocks (Sundays 29 March and 25 October
    # 2026): the wall-clock window lasts 7 hours in spring and 9 in autumn.
    ("2026-03-28T12:00", ("sat",), (40, 68, 1.0)),
    ("2026-10-24T12:00", ("sat",), (40, 76, 1.0)),
])
def test_a_deferrable_window_is_placed_on_the_horizon_in_local_time(
        start: str, days: tuple[str, ...] | None,
        expected: tuple[int, int, float] | None) -> None:
    assert isinstance(DYE_BATCH, DeferrableLoadSpec)
    spec = DYE_BATCH if days is None else DYE_BATCH.model_copy(update={"days": days})
    found = deferrable_window(spec, _at(start), 96, 15)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found[:2] == expected[:2]
        assert found[2] == pytest.approx(expected[2])


def test_the_clear_sky_shape_is_dark_at_night_and_peaks_after_local_noon() -> None:
    start = _at("2026-11-26T00:00")
    kw = clear_sky_kw(350.0, start, 96, 0.25)
    assert kw.max() <= 350.0
    assert kw.max() > 345.0
    assert np.all(kw[:24] == 0.0)  # 00:00-06:00
    assert np.all(kw[76:] == 0.0)  # 19:00-24:00
    assert 48 <= int(np.argmax(kw)) <= 52  # 12:00-13:00
    assert horizon_start_ms(1_000, 15) == 900_000
    assert horizon_start_ms(900_000, 15) == 900_000


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    upgrade(engine)
    registry = Registry(engine)
    with registry.writing() as session:
        load_into_registry(session, SPEC)
    yield registry
    engine.dispose()


def _plan_rows(registry: Registry) -> list[PlanRow]:
    with registry.reading() as session:
        return list(session.scalars(select(PlanRow).order_by(PlanRow.id)))


def _series_counts(store: InfluxV1Store, quantity: str) -> dict[str, int]:
    series = store.query(f'SELECT count("value") FROM "{PLAN_POLICY}"."{PLANS}" WHERE '
                         '"quantity" = $q GROUP BY "asset"', {"q": quantity})
    return {s.tags["asset"]: int(s.values[0][1]) for s in series}


def test_a_plan_from_registry_and_forecasts_beats_the_baseline_and_is_stored_once(
        store: InfluxV1Store, influx_settings: InfluxSettings,
        registry: Registry) -> None:
    end = now_quarter()
    write_history(store, influx_settings.database, end, weeks=2)
    ForecastJob(store, SPEC, ForecastSettings()).run(
        now_ms=end + 60_000)
    job = PlanJob(store, registry, SPEC.id, SETTINGS,
                  nominal_kw=nominal_kw(SPEC))
    outcome = job.run(now_ms=end + 60_000)
    assert outcome is not None
    problem, result = outcome.assembly.problem, outcome.result

    # The horizon starts at the next quarter-hour; the shared battery and genset sit at
    # the estate's connection, the tenants' assets with their tenants.
    assert outcome.assembly.start_ms == end + STEP_MS == horizon_start_ms(end + 60_000, 15)
    assert problem.steps == SETTINGS.horizon_steps
    assert problem.facilities == ("foods", "metal", "textile", "units", "utilities", SHARED)
    shared: tuple[OptimiserAsset, ...] = (*problem.batteries, *problem.gensets,
                                          *problem.thermal, *problem.pumps, *problem.pv)
    by_name = {a.name: a.facility for a in shared}
    assert by_name["battery"] == by_name["genset"] == SHARED
    assert by_name["coldroom"] == "foods"
    # Base load is the stored forecast (nothing fell back to nominal load).
    assert not [n for n in outcome.assembly.notes if "stored forecast" in n]
    times = np.arange(end + STEP_MS, end + STEP_MS + problem.steps * STEP_MS, STEP_MS)
    textile = problem.facilities.index("textile")
    assert np.allclose(problem.base_load_kw[textile], demand("textile", times), rtol=0.03)
    # The billing period's peak so far: this month's highest rolled-up estate quarter-hour.
    month = datetime.fromtimestamp(end / 1000, UTC).astimezone(problem.start.tzinfo).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0)
    history = np.arange(max(end - 2 * 7 * 96 * STEP_MS, int(month.timestamp() * 1000)),
                        end - RAW_HOURS * 3_600_000, STEP_MS)
    if history.size:
        estate = np.sum([demand(f, history) for f in ("textile", "foods", "metal",
                                                      "utilities", "units")], axis=0)
        expected = float(estate.max())
        assert problem.prior_peak_kw == pytest.approx(expected)

    # The plan keeps every constraint (rechecked from its schedule alone) and does at
    # least as well as doing nothing.
    assert check(problem, result) == []
    assert result.status.value == "optimal", [v.message for v in result.violations]
    assert result.cost <= result.baseline.cost + 1e-6 * abs(result.baseline.cost)
    assert (result.peak_kw <= result.baseline.peak_kw + 1e-6
            or result.peak_kw <= problem.capacity_kw)
    # Import up to the month's peak so far costs no demand charge; above it, it would.
    assert result.peak_kw <= max(result.baseline.peak_kw, problem.prior_peak_kw) + 1e-6

    rows = _plan_rows(registry)
    assert len(rows) == 1
    row = rows[0]
    assert row.id == outcome.saved.id
    # Every commanded asset of the sample estate is manual: the plan waits for an operator.
    assert (row.status, row.trigger, row.solver_status) == ("draft", "schedule", "optimal")
    assert row.cost == pytest.approx(result.cost)
    assert row.baseline_cost == pytest.approx(result.baseline.cost)
    assert row.peak_kw == pytest.approx(result.peak_kw)
    assert row.baseline_peak_kw == pytest.approx(result.baseline.peak_kw)
    assert row.horizon_start == datetime.fromtimestamp((end + STEP_MS) / 1000, UTC)
    # Every asset with a part in this horizon (a deferrable load only inside its window).
    assert set(row.setpoints) == set(by_name) | {d.name for d in problem.deferrables}
    assert {"battery", "genset", "coldroom", "well", "metal-roof-pv"} <= set(row.setpoints)
    assert all(len(v) == problem.steps for v in row.setpoints.values())
    assert "no state of charge" in row.explanation  # no battery telemetry was written
    assert outcome.commands == ()  # no auto asset, no sender

    # The series: one setpoint per asset and step, the levels, the estate's import.
    counts = _series_counts(store, "setpoint")
    assert counts == dict.fromkeys(row.setpoints, problem.steps)
    assert _series_counts(store, "baseline_import") == {ESTATE_SCOPE: problem.steps}
    ids = store.query(f'SELECT distinct("plan_id") FROM "{PLAN_POLICY}"."{PLANS}"')
    assert [v[1] for v in ids[0].values] == [row.id]

    # The same horizon again: the row is rewritten, the series overwritten, nothing added.
    again = job.run(now_ms=end + 120_000)
    assert again is not None
    assert again.saved.id == row.id
    assert again.saved.revision == 2
    assert len(_plan_rows(registry)) == 1
    assert _series_counts(store, "setpoint") == counts

    # The next quarter-hour's plan supersedes the draft.
    later = job.run(now_ms=end + STEP_MS + 60_000)
    assert later is not None
    assert later.saved.id != row.id
    assert [(r.id, r.status) for r in _plan_rows(registry)] == [
        (row.id, "superseded"), (later.saved.id, "draft")]
    with registry.reading() as session:
        audit = session.scalar(select(func.count()).select_from(AuditRow)
                               .where(AuditRow.subject_type == "plan"))
    assert audit == 3


def test_inputs_the_optimiser_refuses_are_a_plan_failure_with_the_asset_and_field(
        store: InfluxV1Store, influx_settings: InfluxSettings,
        registry: Registry) -> None:
    with registry.writing() as session:
        battery = session.scalars(select(AssetRow).where(AssetRow.kind == "battery")).first()
        assert battery is not None
        battery.params = {**battery.params, "charge_kw": 1e12}  # kW for W: a unit mistake
        battery_id = battery.id
    job = PlanJob(store, registry, SPEC.id, SETTINGS, nominal_kw=nominal_kw(SPEC))

    assert job.run(now_ms=now_quarter() + 60_000) is None
    assert _plan_rows(registry) == []
    with registry.reading() as session:
        failures = list(session.scalars(select(AuditRow).where(
            AuditRow.action == "plan.failed", AuditRow.subject_id == SPEC.id)))
    assert len(failures) == 1
    assert failures[0].detail["trigger"] == "schedule"
    assert f"{battery_id} charge_kw: must be in [0, 1e+07], got 1e+12" in (
        failures[0].detail["reason"])


def test_an_event_replans_at_once_with_its_reason_as_the_trigger(
        store: InfluxV1Store, influx_settings: InfluxSettings,
        registry: Registry) -> None:
    job = PlanJob(store, registry, SPEC.id, SETTINGS,
                  nominal_kw=nominal_kw(SPEC))
    asked: list[str] = []
    job.request_soon = lambda: asked.append("soon")
    job.replan("asset-offline:battery")
    assert asked == ["soon"]
    assert _plan_rows(registry) == []  # the scheduler runs it, not the caller
    outcome = job.run()
    assert outcome is not None
    [row] = _plan_rows(registry)
    assert row.trigger == "event:asset-offline:battery"
    # Without any forecast every tenant's nominal load stands in, and the plan says so.
    for facility in SPEC.facilities:
        assert f"{facility.name}: no stored forecast for 96 of 96 steps" in row.explanation


@pytest.fixture
def simulator_feed(mqtt_settings: MqttSettings, start_ingest: Callable[..., object],
                   store: InfluxV1Store) -> Iterator[None]:
    """The simulator publishing the sample estate every 5 s into Mosquitto, ingest writing
    InfluxDB; the last 10 minutes are published first so the worker has telemetry."""
    start_ingest()
    simulator = EstateSimulator(SPEC, seed=11)
    publisher = Publisher(mqtt_settings, f"sim-{uuid.uuid4().hex[:8]}",
                          DeviceId(SPEC.id, "edge", "sim-plan"))
    publisher.start(simulator.devices)
    now = time.time_ns() // 1_000_000
    publish_range(simulator, publisher, now - now % 5000 - 600_000, 120, 5000)
    deadline = time.monotonic() + 60
    soc: list[Series] = []
    while not soc and time.monotonic() < deadline:
        soc = store.query('SELECT last("state_of_charge") FROM "reading" WHERE '
                          "\"device\" = 'battery'")
        time.sleep(0.2)
    assert soc, "the battery's readings did not reach InfluxDB"
    stop = threading.Event()
    thread = threading.Thread(target=run_realtime, args=(simulator, publisher, 5.0, stop),
                              daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)
    publisher.stop(simulator.devices)


def test_the_worker_plans_on_schedule_from_live_telemetry(
        simulator_feed: None, mqtt_settings: MqttSettings, influx_settings: InfluxSettings,
        tmp_path: Path) -> None:
    """``run_worker`` as deployed, with ``planning.every_s`` = 2 s standing for the
    15 minutes of production: within one quarter-hour every run plans the same horizon,
    so the draft is rewritten (its revision counts the runs) rather than duplicated.

    The estate battery is set to automatic control, so the plan's first setpoint goes to
    it as a command at once; a device on the broker (the edge's command handler driving a
    simulated battery) carries it out and answers."""
    url = f"sqlite:///{tmp_path / 'worker.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    registry = Registry(engine)
    with registry.writing() as session:
        load_into_registry(session, SPEC)
        session.execute(update(AssetRow).where(AssetRow.id == "battery")
                        .values(control_mode="auto"))
    battery = DeviceId(SPEC.id, "utilities", "battery")
    # The registry already holds the estate, with the battery's mode changed: keep it.
    settings = DispatchSettings(
        mqtt=mqtt_settings, influx=influx_settings, registry_url=url,
        registry_load_estate=False,
        planning=PlanningSettings(every_s=2, time_limit_s=10), scheduler_lease_ttl_s=6,
        http_port=0)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings, stop), daemon=True)
    with simulated_battery(mqtt_settings, battery, tmp_path) as simulated:
        worker.start()
        try:
            deadline = time.monotonic() + 120
            rows: list[PlanRow] = []
            while time.monotonic() < deadline:
                rows = _plan_rows(registry)
                if sum(r.summary.get("revision", 0) for r in rows) >= 3 and \
                        _battery_commands(registry, final=True):
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            worker.join(60)
    assert not worker.is_alive(), "the worker did not stop"
    assert sum(r.summary["revision"] for r in rows) >= 3, "fewer than three planning runs"
    newest = rows[-1]
    assert newest.status == "draft"
    assert newest.trigger == "schedule"
    assert newest.cost is not None
    assert newest.baseline_cost is not None
    assert newest.peak_kw is not None
    assert newest.baseline_peak_kw is not None
    assert newest.cost <= newest.baseline_cost + 1e-6 * abs(newest.baseline_cost)
    # The battery's state of charge came from the simulator through MQTT and ingest.
    assert "no state of charge" not in newest.explanation
    with registry.reading() as session:
        runs = session.scalars(select(AuditRow.at).where(AuditRow.subject_type == "plan")
                               .order_by(AuditRow.id)).all()
    assert len(runs) >= 3
    assert runs[-1] > runs[0]
    # The resulting command: the plan's first battery setpoint, carried out and answered.
    done = _battery_commands(registry, final=True)
    assert done, "no battery command reached a final state"
    command = done[-1]
    assert command.status == "done", (command.status, command.reason, command.detail)
    # It belongs to a plan the worker made (a later run of the same quarter-hour may move
    # the setpoint and send that one too: each distinct setpoint is a command of its own).
    assert command.plan_id in {r.id for r in rows}
    assert set(command.params) == {"kw"}
    assert -500 <= command.params["kw"] <= 500
    held = simulated.asset(battery)
    assert isinstance(held, SimulatedBattery)
    assert any(held.setpoint_kw == c.params["kw"] for c in done)
    with registry.reading() as session:
        trail = session.scalars(select(AuditRow.action).where(
            AuditRow.subject_type == "command", AuditRow.subject_id == command.id)
            .order_by(AuditRow.id)).all()
    assert trail == ["command.pending", "command.sent", "command.accepted", "command.done"]
    engine.dispose()


def _battery_commands(registry: Registry, final: bool) -> list[CommandRow]:
    """The battery's commands, oldest first (only those with a final answer)."""
    with registry.reading() as session:
        commands = list(session.scalars(select(CommandRow).where(CommandRow.asset_id == "battery")
                                        .order_by(CommandRow.created_at)).all())
    return [c for c in commands
            if not final or c.status in ("done", "rejected", "failed", "timed_out")]
