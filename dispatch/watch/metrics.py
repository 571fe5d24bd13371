"""What the control room counts in the worker's /metrics (docs/operations.md).

The registry's counts (alarms active by severity, incidents open, events waiting in the
outbox) are read when Prometheus scrapes, so every worker, standby or active, reports the
registry as it is; the evaluators' times and counts are the active worker's own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dispatch.registry.room_counts import RoomCounts
from estate.alarm_rules import SEVERITIES
from estate.errors import EstateError

log = logging.getLogger(__name__)

RULE_EVALUATION = Histogram(
    "dispatch_rule_evaluation_seconds",
    "Time to evaluate the alarm rules: one message (stream) or one cycle (window)",
    ["mode"], buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))
TRANSITIONS = Counter("dispatch_alarm_transitions_total",
                      "Alarm transitions recorded in the registry", ["action"])
STREAM_READINGS = Counter("dispatch_stream_readings_total",
                          "Readings fed to the streaming rules")
STREAM_REFUSED = Counter("dispatch_stream_refused_total",
                         "Telemetry messages the control room could not read", ["reason"])
JOB_RUNS = Counter("dispatch_job_runs_total", "Scheduler job runs", ["job", "result"])
STEP_LATENCY = Histogram(
    "dispatch_alarm_record_latency_seconds",
    "From a message's arrival to its transitions committed in the registry",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))


class RoomCollector(Collector):
    """The registry's counts, read at each scrape; a registry that does not answer
    leaves them out (its absence is the signal) and logs why."""

    def __init__(self) -> None:
        # Set by the worker once its registry is open; nothing is reported before.
        self.counts: Callable[[], RoomCounts] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        source = self.counts
        if source is None:
            return
        try:
            counts = source()
        except EstateError as exc:
            log.warning("control room metrics: %s", exc)
            return
        alarms = GaugeMetricFamily("dispatch_alarms_active", "Active alarms by severity",
                                   labels=["severity"])
        for severity in SEVERITIES:
            alarms.add_metric([severity], counts.alarms_active.get(severity, 0))
        yield alarms
        yield GaugeMetricFamily("dispatch_incidents_open", "Open incidents",
                                value=counts.incidents_open)
        late = GaugeMetricFamily("dispatch_incidents_sla_breached",
                                 "Open incidents past an SLA deadline", labels=["deadline"])
        late.add_metric(["response"], counts.response_late)
        late.add_metric(["resolution"], counts.resolution_late)
        yield late
        yield GaugeMetricFamily("dispatch_outbox_events_waiting",
                                "Events in the outbox not yet delivered",
                                value=counts.events_waiting)


ROOM_COUNTS = RoomCollector()
REGISTRY.register(ROOM_COUNTS)
