"""Acceptance: an order received from a real openleadr VTN on loopback runs end to end:
the VEN registers, the event becomes an order and is opted into, the tenants' split and
notices follow, the plan keeps the cap, its commands are answered by the simulator's
devices over the real Mosquitto, the estate's import is reported to the VTN, and each
tenant is settled. The registry is the real PostgreSQL and the metered data the real
InfluxDB.

The meters' readings of the event window are simulated ahead of time (the simulator can
compute any instant, as ``estate backfill`` does), and the tenants that were asked to shed
have their incomers' readings there written down by their share: so the settlement runs
as soon as the plan has, instead of half an hour after the window.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapters.mqtt import MqttConnection
from dispatch.control.approval import approve
from dispatch.control.sender import CommandSender
from dispatch.dr.job import DemandResponseJob
from dispatch.dr.settle import settle
from dispatch.dr.ven import Ven
from dispatch.planning.forecasts import nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry import dr_book
from dispatch.registry.command_store import CommandStore
from dispatch.registry.outbox import events
from dispatch.registry.plan_store import PlanStore
from dispatch.settings import DemandResponseSettings, PlanningSettings
from edge.__main__ import run as run_simulator
from edge.settings import EdgeSettings
from estate.settings import MqttSettings
from estate.topics import DeviceId
from launcher.servers import InfluxDB
from tests.dispatch.dr.flow import Estate, at, estate, kw_list, shed, window
from tests.dispatch.dr.vtn import running_vtn

pytestmark = pytest.mark.servers

CUT_KW = 300.0
SIMULATED = {"utilities/battery", "utilities/genset", "utilities/well-pump"}


@pytest.fixture
def event_window() -> tuple[int, int]:
    return window(time.time_ns() // 1_000_000, 5, 2)


@pytest.fixture
def sample(influxdb: InfluxDB, pg_url: str, event_window: tuple[int, int]) -> Iterator[Estate]:
    with estate(influxdb.url, "dr_from_vtn", pg_url, event_window[1]) as e:
        yield e


@pytest.fixture
def sender(sample: Estate, mqtt_settings: MqttSettings, tmp_path: Path) -> Iterator[
        CommandSender]:
    """The control room's command sender, and the simulator answering for its devices."""
    stop = threading.Event()
    simulator = threading.Thread(target=run_simulator, daemon=True, args=(EdgeSettings(
        mqtt=mqtt_settings, interval_s=1.0, command_log_path=tmp_path / "commands.sqlite",
        client_id=f"sim-{uuid.uuid4().hex[:8]}"), stop))
    simulator.start()
    room = MqttConnection(mqtt_settings, f"room-{uuid.uuid4().hex[:8]}")
    commands = CommandSender(room, CommandStore(sample.registry), estates=[sample.spec.id],
                             answer_grace_s=0, sweep_interval_s=0.1)
    commands.start()
    room.connect()
    battery = DeviceId(sample.spec.id, "utilities", "battery")
    deadline = time.monotonic() + 30
    while True:  # ready once the simulator answers: it subscribes after it starts
        probe = commands.wait(commands.send(battery, "set_battery_kw", {"kw": 0.0},
                                            requested_by="test:probe", timeout_s=2), 5)
        if probe is not None and probe.status == "done":
            break
        assert time.monotonic() < deadline, "the simulator never answered"
    try:
        yield commands
    finally:
        commands.close()
        room.close()
        stop.set()
        simulator.join(20)


def _status(sample: Estate, event_id: str) -> str | None:
    with sample.registry.reading() as session:
        order = dr_book.order_by_external_id(session, sample.spec.id, "openadr", event_id)
    return None if order is None else order.status


def test_an_order_from_the_vtn_runs_end_to_end(sample: Estate, sender: CommandSender,
                                               event_window: tuple[int, int]) -> None:
    start, end = event_window
    replans: list[str] = []
    job = DemandResponseJob(sample.dr, on_split=replans.append, standing_opt="in")
    with running_vtn() as vtn:
        ven = Ven(DemandResponseSettings(vtn_url=vtn.url, programme="summer",
                                         payment_per_kwh=0.3, penalty_per_kwh=0.5,
                                         report_interval_s=10),
                  job.received, job.estate_import_kw, job.cancelled)
        ven.start(timeout_s=30)
        try:
            event_id = vtn.event("delta", at(start), [CUT_KW, CUT_KW])
            vtn.wait(lambda: (event_id, "optIn") in vtn.opts, 30, "opt-in")
            with sample.registry.reading() as session:
                stored = dr_book.order_by_external_id(session, sample.spec.id, "openadr",
                                                      event_id)
            assert stored is not None
            assert (stored.kind, stored.kw, stored.opt, stored.status) == (
                "cut", CUT_KW, "in", "split")
            assert replans[0] == f"dr-order-{stored.id}"
            vtn.wait(lambda: len(vtn.reports) > 0, 60, "telemetry report")
            ven.send_opt(event_id, "in")  # the operator confirms: the VTN takes the answer
            later = vtn.event("delta", at(end + 3_600_000), [100.0])
            vtn.wait(lambda: (later, "optIn") in vtn.opts, 30, "opt-in to the second event")
            vtn.cancel(later)
            vtn.wait(lambda: _status(sample, later) == "cancelled", 30, "cancellation")
            assert replans[-1].endswith("-cancelled")
        finally:
            ven.stop()
    assert vtn.reports[0] > 0  # the estate's import, kW

    plan = PlanJob(sample.store, sample.registry, sample.spec.id,
                   PlanningSettings(horizon_steps=16, time_limit_s=30), sender=sender,
                   nominal_kw=nominal_kw(sample.spec)).run(now_ms=start - 60_000)
    assert plan is not None
    caps = [w.cap_kw for w in plan.assembly.problem.dr_windows]
    assert len(caps) == 2
    assert all(plan.result.schedule.grid_import[:2] <= np.asarray(caps) + 1.0)
    with sample.registry.reading() as session:
        detail = dr_book.order(session, sample.spec.id, stored.id).detail
        notices = [e for e in events(session, sample.spec.id) if e.type == "dr.notice"]
        parts = {p.facility_id: p for p in dr_book.participations(session, stored.id)}
    assert detail["plan"]["short_steps"] == []
    assert {e.subject_id for e in notices} == set(parts)

    approval = approve(PlanStore(sample.registry), sender, plan.saved.id, "ana", now_ms=start,
                       deadline_s=20)
    sent = [sender.store.get(c) for c in approval.commands]
    to_simulator = [c.id for c in sent
                    if c is not None and f"{c.device.facility}/{c.device.device}" in SIMULATED]
    assert to_simulator, f"the plan commands none of the simulated devices: {sent}"
    answered = [sender.wait(c, 30) for c in to_simulator]
    done = [c for c in answered if c is not None and c.status == "done"]
    assert len(done) == len(to_simulator), f"not all answered by the simulator: {answered}"

    for facility, part in parts.items():
        if part.requested_kwh > 0:
            shed(sample, facility, kw_list(np.asarray(part.requested_kw)),
                 start, 1.2)
    settled = {s.facility: s for s in settle(sample.dr, stored.id, at(end + 1_800_000))}
    print(f"\nevent {event_id}: plan {plan.saved.id}, import "
          f"{[round(float(v)) for v in plan.result.schedule.grid_import[:2]]} kW under caps "
          f"{[round(c) for c in caps]} kW; {len(done)} commands done by the simulator; "
          f"{len(vtn.reports)} reports to the VTN")
    for s in settled.values():
        print(f"{s.facility:<10} asked {s.requested_kwh:6.1f} kWh, delivered "
              f"{s.delivered_kwh:6.1f} kWh: +{s.payment:6.2f} -{s.penalty:6.2f}")
    assert set(settled) == set(parts)
    # Each tenant's share is kept to the watt per step and the kilowatt-hour to three places:
    # their sum may pass the cut by those roundings (a few watt-hours), never by more.
    assert sum(s.requested_kwh for s in settled.values()) <= CUT_KW * 0.5 + 0.01
    assert sum(s.payment for s in settled.values()) > 0
    assert settled["foods"].requested_kwh == 0  # critical
