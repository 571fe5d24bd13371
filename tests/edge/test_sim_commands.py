"""``estate simulate`` answers commands for the estate's simulated battery, genset and
pumps: sent by the control room's sender over the real broker, recorded in the registry."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from adapters.mqtt import MqttConnection
from dispatch.control.sender import CommandSender
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry, make_engine, upgrade
from edge.__main__ import run as run_simulator
from edge.settings import EdgeSettings
from edge.sim_commands import simulated_command_handler
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import MqttSettings
from estate.topics import DeviceId

SPEC = load_estate(SAMPLE_ESTATE)


def test_the_sample_estates_commandable_assets_are_simulated(tmp_path: Path) -> None:
    handler = simulated_command_handler(SPEC, tmp_path / "log.sqlite")
    assert handler is not None
    assert {f"{d.facility}/{d.device}" for d in handler.devices} == {
        "utilities/battery", "utilities/genset", "utilities/well-pump"}


def test_the_running_simulator_carries_out_commands_and_refuses_bad_ones(
        mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    settings = EdgeSettings(mqtt=mqtt_settings, interval_s=1.0,
                            command_log_path=tmp_path / "commands.sqlite",
                            client_id=f"sim-{uuid.uuid4().hex[:8]}")
    stop = threading.Event()
    thread = threading.Thread(target=run_simulator, args=(settings, stop), daemon=True)
    thread.start()
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    upgrade(engine)
    room = MqttConnection(mqtt_settings, f"room-{uuid.uuid4().hex[:8]}")
    sender = CommandSender(room, CommandStore(Registry(engine)), estates=[SPEC.id],
                           answer_grace_s=0, sweep_interval_s=0.1)
    sender.start()
    room.connect()
    try:
        battery = DeviceId(SPEC.id, "utilities", "battery")
        looms = DeviceId(SPEC.id, "textile", "looms")  # a deferrable load: no device answers
        deadline = time.monotonic() + 30
        done = None
        while time.monotonic() < deadline:  # until the simulator has subscribed
            sent = sender.send(battery, "set_battery_kw", {"kw": -120.5},
                               requested_by="operator:ana", timeout_s=2)
            done = sender.wait(sent, 5)
            if done is not None and done.status == "done":
                break
        assert done is not None
        assert done.status == "done"
        too_much = sender.wait(sender.send(battery, "set_battery_kw", {"kw": 9000},
                                           requested_by="operator:ana", timeout_s=5), 10)
        assert too_much is not None
        assert (too_much.status, too_much.reason) == ("rejected", "out-of-range")
        silent = sender.wait(sender.send(looms, "set_power_kw", {"kw": 10},
                                         requested_by="operator:ana", timeout_s=1), 10)
        assert silent is not None
        assert silent.status == "timed_out"
    finally:
        sender.close()
        room.close()
        stop.set()
        thread.join(20)
        engine.dispose()
    assert not thread.is_alive()
