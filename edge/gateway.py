"""The Modbus gateway as a service: poll meters, queue on disk, forward to the broker.

::

    poll loop      meters --Modbus TCP--> readings, stamped when each meter is read
                   --SenML pack per meter--> outbox (SQLite, committed before publishing)
    sender thread  outbox, oldest first --MQTT 5, QoS 1--> broker
                   a message leaves the outbox only once the broker acknowledged it

While the broker is away the poll loop carries on and the outbox grows (within its
bounds, ``edge.outbox``); the connection comes back with exponential backoff, the sender
replays the backlog oldest first, and a restarted gateway replays whatever its predecessor
left.
The MQTT session is persistent (clean start off, session expiry), and the gateway
publishes retained births for itself and its meters on every connection, with a Last
Will that marks the gateway offline if it vanishes (docs/contract.md section 7).

With a commands file the gateway also takes commands for the devices listed there
(docs/commands.md): ``edge.command_handler.CommandHandler`` subscribes to each device's
``cmd/req``, checks the command against the device's policy, writes its holding
registers and answers on the request's Response Topic. Requests are acknowledged by hand,
only once their answer is in the command log, so a crash in between redelivers them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, cast

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapters.mqtt import MqttConnection
from adapters.ops_http import OpsServer
from edge.command_executors import ModbusExecutor
from edge.command_handler import CommandHandler, CommandTarget
from edge.gateway_config import load_command_devices, load_meters
from edge.modbus import ModbusGateway, ModbusMeter
from edge.outbox import Bounds, Outbox, OutboxMetrics
from edge.publisher import Publisher, status_payload
from edge.settings import GatewaySettings
from estate.errors import BrokerError
from estate.lifecycle import stop_on_signals
from estate.ports import Delivery, Messaging, Session, Will
from estate.readiness import Readiness
from estate.readings import Reading
from estate.senml import encode_readings
from estate.settings import refuse_default_secrets
from estate.topics import Channel, DeviceId

log = logging.getLogger(__name__)

# Messages published but not yet acknowledged. Enough to replay a backlog at broker speed
# (one round trip per window), small enough that an outage never moves the backlog from
# disk into the MQTT client's memory.
SEND_WINDOW: Final = 100
# How long a graceful stop keeps forwarding the backlog before leaving it in the outbox.
FLUSH_TIMEOUT_S: Final = 5.0

QueuedHook = Callable[[DeviceId, list[Reading]], None]
"""Called with each meter's readings once they are committed to the outbox."""


# --- metrics ---------------------------------------------------------------------------

class GatewayMetrics:
    """The gateway's Prometheus metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.outbox = OutboxMetrics(registry)
        self.polls = Counter("gateway_meter_polls", "Meter reads, by result", ["result"],
                             registry=registry)
        self.readings = Counter("gateway_readings_polled", "Readings read from meters",
                                registry=registry)
        self.connected = Gauge("gateway_mqtt_connected", "1 while connected to the broker",
                               registry=registry)
        for result in ("ok", "failed"):
            self.polls.labels(result)


# --- polling ---------------------------------------------------------------------------

class _NoPublish:
    """ModbusGateway hands its readings to a publisher; ours come from its return value."""

    def publish(self, device: DeviceId, readings: list[Reading]) -> None:
        pass


class Poller:
    """Reads every meter in turn and queues each meter's readings in the outbox."""

    def __init__(self, meters: list[ModbusMeter], outbox: Outbox, metrics: GatewayMetrics,
                 timeout_s: float, on_queued: QueuedHook | None = None) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._on_queued = on_queued
        sink = cast(Publisher, _NoPublish())
        # One ModbusGateway per meter so that each meter is stamped with its own read time,
        # not the start of a pass that may have waited on a dead meter's timeout.
        self._pollers = [(m.device, ModbusGateway([m], sink, timeout_s=timeout_s))
                         for m in meters]
        self._last_ms: dict[DeviceId, int] = {}
        self.queued = threading.Event()

    def poll_pass(self) -> int:
        """Read every meter once and queue what was read; return the readings queued."""
        packs: list[tuple[DeviceId, list[Reading]]] = []
        for device, poller in self._pollers:
            now_ms = time.time_ns() // 1_000_000
            # A meter's times must rise strictly: a repeated time (a clock stepped back)
            # would overwrite the earlier reading in storage.
            now_ms = max(now_ms, self._last_ms.get(device, 0) + 1)
            readings = poller.poll_once(now_ms).get(device)
            if not readings:
                self._metrics.polls.labels("failed").inc()
                continue
            self._metrics.polls.labels("ok").inc()
            self._last_ms[device] = now_ms
            packs.append((device, readings))
        if not packs:
            return 0
        self._outbox.append_many([(d.topic(Channel.TELEMETRY), encode_readings(d, r),
                                   r[0].time_ms) for d, r in packs])
        count = sum(len(r) for _, r in packs)
        self._metrics.readings.inc(count)
        self.queued.set()
        if self._on_queued is not None:
            for device, readings in packs:
                self._on_queued(device, readings)
        return count

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Poll every ``interval_s`` until ``stop``; a pass that overran starts the next now."""
        next_pass = time.monotonic()
        while not stop.is_set():
            self.poll_pass()
            next_pass = max(next_pass + interval_s, time.monotonic())
            stop.wait(next_pass - time.monotonic())

    def close(self) -> None:
        for _, poller in self._pollers:
            poller.close()


# --- forwarding ------------------------------------------------------------------------

class Sender:
    """Forwards the outbox to the broker, oldest first, deleting what the broker acked."""

    def __init__(self, outbox: Outbox, connection: Messaging,
                 births: Callable[[], None], wakeup: threading.Event) -> None:
        self._outbox = outbox
        self._connection = connection
        self._births = births
        self._wakeup = wakeup
        self._in_flight: deque[tuple[int, Delivery]] = deque()
        self._last_id = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        was_connected = False
        while not self._stop.is_set():
            try:
                connected = self._connection.connected
                if connected and not was_connected:
                    self._births()
                was_connected = connected
                self._settle()
                if connected and len(self._in_flight) < SEND_WINDOW and self._send():
                    continue
                if self._in_flight:
                    # The connection keeps un-acknowledged messages over a reconnection and
                    # sends them again itself, so waiting here is all a lost one needs.
                    self._in_flight[0][1].wait(0.05)
                else:
                    self._wakeup.wait(0.2)
                    self._wakeup.clear()
            except Exception:
                # A full disk or a broker refusal must not end forwarding for good: the
                # outbox keeps everything, so the next round simply tries again.
                log.exception("forwarding failed; trying again in a second")
                was_connected = False  # births again once forwarding works
                self._stop.wait(1.0)
        self._settle()

    def _send(self) -> bool:
        """Publish the next messages after the last one sent; False when there were none."""
        batch = self._outbox.peek(SEND_WINDOW - len(self._in_flight), self._last_id)
        for message in batch:
            try:
                info = self._connection.publish(message.topic, message.payload, qos=1)
            except BrokerError as exc:
                log.warning("cannot publish to %s, trying again shortly: %s", message.topic,
                            exc)
                self._stop.wait(1.0)
                return False
            self._in_flight.append((message.id, info))
            self._last_id = message.id
        return bool(batch)

    def _settle(self) -> None:
        """Delete what the broker acknowledged (PUBACKs arrive in publication order)."""
        done: list[int] = []
        while self._in_flight and self._in_flight[0][1].delivered:
            done.append(self._in_flight.popleft()[0])
        self._outbox.ack(done)


# --- the service -----------------------------------------------------------------------

class Gateway:
    """The gateway's parts, wired: outbox, MQTT connection, sender, poller, metrics."""

    def __init__(self, settings: GatewaySettings, meters: list[ModbusMeter], *,
                 registry: CollectorRegistry | None = None,
                 on_queued: QueuedHook | None = None) -> None:
        self.settings = settings
        # Read first: a bad commands file must stop the gateway before it creates anything.
        commands = (None if settings.commands_file is None
                    else load_command_devices(settings.commands_file, settings.estate))
        self.identity = DeviceId(settings.estate, settings.facility, settings.device)
        self.devices = [m.device for m in meters]
        self.metrics = GatewayMetrics(registry or CollectorRegistry())
        self.outbox = Outbox(settings.outbox_path,
                             Bounds(settings.outbox_max_rows, settings.outbox_max_bytes,
                                    settings.outbox_max_age_s), self.metrics.outbox)
        self.poller = Poller(meters, self.outbox, self.metrics, settings.modbus_timeout_s,
                             on_queued)
        self.commands: CommandHandler | None = None
        self._executor: ModbusExecutor | None = None
        if commands is not None:
            policies, targets = commands
            self._executor = ModbusExecutor(targets, timeout_s=settings.modbus_timeout_s)
            self.commands = CommandHandler(
                [CommandTarget(device, policy, self._executor) for device, policy in policies],
                settings.command_log_path)
        # Only the gateway's own status has a Last Will: the broker cannot tell whether
        # a meter behind a vanished gateway is still measuring. Commands are acknowledged
        # by hand, once answered and logged; nothing else is subscribed to.
        self.connection = MqttConnection(
            settings.mqtt, settings.client_id,
            session=Session(clean_start=False, expiry_s=settings.session_expiry_s,
                            manual_ack=self.commands is not None),
            will=Will(self.identity.topic(Channel.STATUS), orjson.dumps({"state": "offline"})))
        self.metrics.connected.set_function(lambda: float(self.connection.connected))
        self.sender = Sender(self.outbox, self.connection, self._births, self.poller.queued)
        self._polling = threading.Event()
        # Ready: connected, subscribed to its commands (if it takes any), forwarding and
        # polling. Offline it still polls and queues (store-and-forward): not ready says
        # that nothing reaches the estate for now, not that the gateway should restart.
        self.readiness = Readiness(
            {"mqtt_connected": lambda: self.connection.connected,
             "subscribed": lambda: self.connection.subscribed,
             "forwarding": lambda: self.sender.alive,
             "polling": self._polling.is_set},
            lambda: {"gateway": self.identity.base_name, "outbox_messages": len(self.outbox),
                     "in_flight": self.sender.in_flight})
        self._ops_server: OpsServer | None = None

    def start(self) -> None:
        """Start forwarding; the broker may be away, the sender waits for it."""
        if self.settings.metrics_port:
            self._ops_server = OpsServer(self.settings.metrics_host, self.settings.metrics_port,
                                         self.readiness, registry=self.metrics.registry,
                                         name="gateway-http")
            self._ops_server.start()
        self.sender.start()
        if self.commands is not None:
            # Before connecting: the subscriptions then go out with the first connection,
            # and answers owed from before a crash wait in the connection until it is up.
            self.commands.start(self.connection, manual_ack=True)
            log.info("gateway %s takes commands for %s; command log %s",
                     self.identity.base_name,
                     ", ".join(f"{d.facility}/{d.device}" for d in self.commands.devices),
                     self.settings.command_log_path)
        self.connection.connect_async()
        log.info("gateway %s polling %d meters every %.1f s; outbox %s holds %d messages",
                 self.identity.base_name, len(self.devices), self.settings.interval_s,
                 self.outbox.path, len(self.outbox))

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        self._polling.set()
        try:
            self.poller.run(self.settings.interval_s, stop)
        finally:
            self._polling.clear()

    def close(self, flush_timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Forward what can be forwarded within ``flush_timeout_s``, keep the rest on disk."""
        deadline = time.monotonic() + flush_timeout_s
        while (self.connection.connected and (len(self.outbox) or self.sender.in_flight)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.sender.stop()
        if self.commands is not None:
            # Finishes the command in hand and publishes its answer before going offline.
            self.commands.stop()
        if self._executor is not None:
            self._executor.close()
        if len(self.outbox):
            log.info("gateway stopping with %d messages in the outbox; they are sent at the "
                     "next start", len(self.outbox))
        if self.connection.connected:
            infos = [self.connection.publish(d.topic(Channel.STATUS), status_payload("offline"),
                                             qos=1, retain=True)
                     for d in [*self.devices, self.identity]]
            for delivery in infos:
                delivery.wait(2)
        self.connection.close()
        self.poller.close()
        self.outbox.close()
        if self._ops_server is not None:
            self._ops_server.stop()

    def _births(self) -> None:
        for device in [self.identity, *self.devices]:
            self.connection.publish(device.topic(Channel.STATUS), status_payload("online"),
                                    qos=1, retain=True)


def run(settings: GatewaySettings, stop: threading.Event | None = None,
        ready: threading.Event | None = None) -> None:
    """Run the gateway until ``stop`` is set (or SIGTERM/SIGINT in the main thread)."""
    refuse_default_secrets(settings.mode, settings.mqtt.password)
    stop = stop or threading.Event()
    stop_on_signals(stop)
    gateway = Gateway(settings, load_meters(settings.meters_file, settings.estate))
    gateway.start()
    try:
        if ready is not None:
            ready.set()
        gateway.run(stop)
    finally:
        gateway.close()
