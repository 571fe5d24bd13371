"""A device on the real broker for tests that send commands: the estate battery, driven as
a simulated asset through the edge's real command handler."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.mqtt import MqttConnection
from edge.command_executors import SimulatedAssetExecutor, SimulatedBattery
from edge.command_handler import CommandHandler, CommandTarget
from estate.commands import CommandPolicy
from estate.settings import MqttSettings
from estate.topics import DeviceId


@contextmanager
def simulated_battery(mqtt: MqttSettings, device: DeviceId, log_dir: Path,
                      ) -> Iterator[SimulatedAssetExecutor]:
    """The battery at ``device`` answering ``set_battery_kw`` (±500 kW) until the end of the
    block; yields its executor, whose ``asset(device)`` holds the setpoint carried out."""
    simulated = SimulatedAssetExecutor({device: SimulatedBattery(max_kw=500, soc_pct=50)})
    handler = CommandHandler([CommandTarget(device, CommandPolicy.from_mapping(
        {"set_battery_kw": {"kw": {"min": -500, "max": 500}}}), simulated)],
        log_dir / "edge_commands.sqlite")
    connection = MqttConnection(mqtt, f"edge-{uuid.uuid4().hex[:8]}")
    connection.connect()
    handler.start(connection)
    assert connection.wait_subscribed(10), "the battery's subscription"
    try:
        yield simulated
    finally:
        handler.stop()
        connection.close()
