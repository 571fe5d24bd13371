"""Composition root of the simulator: ``python -m edge`` or ``estate simulate``.

Every ``interval_s`` the simulator steps every meter; the readings are published over MQTT
(``EDGE_PUBLISH``) and the electrical meters' registers are updated on the Modbus TCP
servers (``EDGE_MODBUS_PORT``), so a gateway can poll them as it polls real meters.
"""

from __future__ import annotations

import logging
import threading
import time

from adapters.ops_http import OpsServer
from edge.command_handler import CommandHandler
from edge.modbus_server import SimulatedModbusServers
from edge.publisher import Publisher
from edge.scale import simulator_for
from edge.settings import EdgeSettings
from edge.sim_commands import simulated_command_handler
from edge.sim_health import SimulatorMetrics
from edge.simulator import EstateSimulator
from estate.lifecycle import stop_on_signals
from estate.logs import configure_logging
from estate.settings import refuse_default_secrets
from estate.topics import DeviceId

log = logging.getLogger(__name__)


def run(settings: EdgeSettings, stop: threading.Event | None = None) -> None:
    refuse_default_secrets(settings.mode, settings.mqtt.password)
    stop = stop or threading.Event()
    simulator = simulator_for(settings)
    spec = simulator.spec
    interval_ms = max(1, round(settings.interval_s * 1000))
    now_ms = time.time_ns() // 1_000_000
    simulator.advance(now_ms - now_ms % interval_ms)
    servers: SimulatedModbusServers | None = None
    publisher: Publisher | None = None
    handler: CommandHandler | None = None
    metrics = SimulatorMetrics(settings.interval_s, publishing=settings.publish)
    ops: OpsServer | None = None
    if settings.modbus_port:
        servers = SimulatedModbusServers(simulator, host=settings.modbus_host,
                                         port=settings.modbus_port,
                                         units_per_server=settings.modbus_units_per_server)
        servers.start()
    if settings.http_port:
        ops = OpsServer(settings.http_host, settings.http_port, metrics.health,
                        registry=metrics.registry, name="simulator-http")
        ops.start()
    try:
        if settings.publish:
            handler = simulated_command_handler(spec, settings.command_log_path)
            # The simulator reports its own status as a device of the estate's "edge" facility.
            publisher = Publisher(settings.mqtt, settings.client_id,
                                  DeviceId(spec.id, "edge", settings.client_id))
            connection = publisher.connection
            metrics.connected = lambda: connection.connected
            if handler is not None:
                # Before connecting: the subscriptions go out with the connection.
                handler.start(publisher.connection)
                log.info("answering commands for %s", ", ".join(
                    f"{d.facility}/{d.device}" for d in handler.devices))
            publisher.start(simulator.devices)
        log.info("simulating %d meters of %s every %.1f s%s%s", len(simulator.devices),
                 spec.name, settings.interval_s, ", publishing" if publisher else "",
                 f", Modbus on ports {servers.ports}" if servers else "")
        stop_on_signals(stop)
        run_loop(simulator, publisher, servers, interval_ms, stop, metrics)
    finally:
        totals = metrics.totals()
        log.info("simulator stopping: %d readings in %d packs published, the last for step %s",
                 totals.readings, totals.messages, totals.last_step_ms)
        if ops is not None:
            ops.stop()
        if handler is not None:
            handler.stop()
        if publisher is not None:
            publisher.stop(simulator.devices)
        if servers is not None:
            servers.stop()


def run_loop(simulator: EstateSimulator, publisher: Publisher | None,
             servers: SimulatedModbusServers | None, interval_ms: int,
             stop: threading.Event, metrics: SimulatorMetrics | None = None) -> None:
    """Step every ``interval_ms``, aligned to the interval, until ``stop`` is set."""
    while not stop.is_set():
        now_ms = time.time_ns() // 1_000_000
        tick = now_ms - now_ms % interval_ms
        messages = readings_count = 0
        if publisher is not None:
            for device, readings in simulator.step(tick):
                publisher.publish(device, readings)
                if readings:
                    messages += 1
                    readings_count += len(readings)
        else:
            simulator.advance(tick)
        if metrics is not None:
            metrics.stepped(tick, messages, readings_count)
        if servers is not None:
            servers.update()
        stop.wait(max(0.0, (tick + interval_ms) / 1000 - time.time()))


def main() -> None:
    configure_logging()
    run(EdgeSettings())


if __name__ == "__main__":
    main()
