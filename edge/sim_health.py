"""The simulator's metrics and health, served on ``EDGE_HTTP_HOST:EDGE_HTTP_PORT``.

The counters move once per step, after the step's packs were handed to the MQTT client,
and are read together under one lock: a scrape sees the readings published up to and
including the step it names (``simulator_last_step_timestamp_seconds``), never half a
step. That lets an operator (and the demo's loss test) compare what the simulator
published up to a step with what reached the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# A step late by this many intervals means the loop is stuck (a step of a large synthetic
# estate takes a fraction of an interval); the floor keeps a 1 s demo interval from
# flapping on a loaded machine.
STALL_INTERVALS: Final = 3
STALL_FLOOR_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Totals:
    steps: int
    messages: int
    readings: int
    last_step_ms: int | None


class SimulatorMetrics(Collector):
    """What the simulator published, per step, and whether it is connected."""

    def __init__(self, interval_s: float, *, publishing: bool,
                 connected: Callable[[], bool] = lambda: False,
                 registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._interval_s = interval_s
        self._publishing = publishing
        self.connected = connected
        self._steps = 0
        self._messages = 0
        self._readings = 0
        self._last_step_ms: int | None = None
        self._started = time.time()
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)

    def stepped(self, step_ms: int, messages: int, readings: int) -> None:
        with self._lock:
            self._steps += 1
            self._messages += messages
            self._readings += readings
            self._last_step_ms = step_ms

    def totals(self) -> Totals:
        with self._lock:
            return Totals(self._steps, self._messages, self._readings, self._last_step_ms)

    def collect(self) -> Iterator[Metric]:
        totals = self.totals()
        yield CounterMetricFamily("simulator_steps", "Simulation steps done",
                                  value=totals.steps)
        yield CounterMetricFamily("simulator_messages_published",
                                  "Telemetry packs handed to the MQTT client (QoS 1)",
                                  value=totals.messages)
        yield CounterMetricFamily("simulator_readings_published",
                                  "Readings in those packs", value=totals.readings)
        yield GaugeMetricFamily("simulator_last_step_timestamp_seconds",
                                "Simulated time of the last step whose packs were published",
                                value=(totals.last_step_ms or 0) / 1000)
        yield GaugeMetricFamily("simulator_mqtt_connected", "1 while connected to the broker",
                                value=1.0 if self.connected() else 0.0)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while steps keep coming and, when publishing, the broker is connected."""
        now = time.time()
        with self._lock:
            last, readings = self._last_step_ms, self._readings
        since = now - (last / 1000 if last is not None else self._started)
        stalled = since > max(STALL_INTERVALS * self._interval_s, STALL_FLOOR_S)
        connected = self.connected()
        ok = not stalled and (connected or not self._publishing)
        return ok, {"status": "ok" if ok else "degraded",
                    "mqtt": {"ok": connected, "required": self._publishing},
                    "last_step_age_s": round(since, 3), "stalled": stalled,
                    "readings_published": readings}
