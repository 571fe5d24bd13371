"""Publishing simulated (or polled) readings over MQTT, per the contract."""

from __future__ import annotations

import logging
import threading
import time

import orjson

from adapters.mqtt import MqttConnection
from edge.simulator import EstateSimulator
from estate.ports import Session, Will
from estate.readings import Reading
from estate.senml import encode_readings
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId

log = logging.getLogger(__name__)

# One deadline for all the offline statuses at shutdown, not one per device: with the
# broker away, 21 devices waited 5 s each and outlived compose's 10 s stop timeout.
STOP_TIMEOUT_S = 5.0


def status_payload(state: str) -> bytes:
    return orjson.dumps({"state": state, "ts": round(time.time(), 3)})


class Publisher:
    """A gateway's MQTT side: births, telemetry packs, and offline notices on shutdown."""

    def __init__(self, mqtt: MqttSettings, client_id: str, gateway: DeviceId) -> None:
        self._gateway = gateway
        # The Last Will marks the gateway offline if it vanishes; its devices' own retained
        # status stays as last published.
        self.connection = MqttConnection(
            mqtt, client_id, session=Session(clean_start=False, expiry_s=3600),
            will=Will(gateway.topic(Channel.STATUS), orjson.dumps({"state": "offline"})))

    def start(self, devices: list[DeviceId]) -> None:
        self.connection.connect()
        for device in [self._gateway, *devices]:
            self.connection.publish(device.topic(Channel.STATUS), status_payload("online"),
                                    qos=1, retain=True)

    def publish(self, device: DeviceId, readings: list[Reading]) -> None:
        if readings:
            self.connection.publish(device.topic(Channel.TELEMETRY),
                                    encode_readings(device, readings), qos=1)

    def stop(self, devices: list[DeviceId], timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Publish every device's offline status, waiting for the acknowledgements at most
        ``timeout_s`` in all (the broker may be away), then disconnect."""
        infos = [self.connection.publish(d.topic(Channel.STATUS), status_payload("offline"),
                                         qos=1, retain=True) for d in [*devices, self._gateway]]
        deadline = time.monotonic() + timeout_s
        for delivery in infos:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("stopping without the broker's acknowledgement of %d offline "
                            "statuses", sum(not d.delivered for d in infos))
                break
            delivery.wait(remaining)
        self.connection.close()


def publish_range(simulator: EstateSimulator, publisher: Publisher, start_ms: int, steps: int,
                  step_ms: int) -> list[Reading]:
    """Publish ``steps`` steps at once (a backfill or a test load); return what was sent."""
    sent: list[Reading] = []
    for k in range(steps):
        for device, readings in simulator.step(start_ms + k * step_ms):
            publisher.publish(device, readings)
            sent.extend(readings)
    return sent


def run_realtime(simulator: EstateSimulator, publisher: Publisher, interval_s: float,
                 stop: threading.Event) -> None:
    """Publish every meter every ``interval_s``, aligned to the interval, until ``stop``."""
    interval_ms = round(interval_s * 1000)
    while not stop.is_set():
        now_ms = time.time_ns() // 1_000_000
        tick = now_ms - now_ms % interval_ms
        count = 0
        for device, readings in simulator.step(tick):
            publisher.publish(device, readings)
            count += len(readings)
        log.debug("published %d readings for %s", count, tick)
        stop.wait(max(0.0, (tick + interval_ms) / 1000 - time.time()))
