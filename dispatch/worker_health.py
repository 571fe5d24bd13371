"""The dispatch worker's ``/metrics`` and ``/health``, on ``DISPATCH_HTTP_HOST:DISPATCH_HTTP_PORT``.

Ready (``/health`` 200) when the registry answers, the scheduler is started (active or
standing by: a standby worker is ready to take over) and the command sender's connection
is subscribed to the answers. The metrics say which worker holds the scheduler lease,
under which fencing token, and how often fenced work was refused because the lease was
lost while it ran (``dispatch_scheduler_deposed_total``: a worker paused past its lease).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dispatch.registry.lock import LeaseKeeper
from estate.readiness import Readiness


class LeaseMetrics(Collector):
    """The lease as the worker's keeper sees it, read at each scrape."""

    def __init__(self, keeper: LeaseKeeper) -> None:
        self._keeper = keeper

    def collect(self) -> Iterator[Metric]:
        keeper = self._keeper
        fence = keeper.fence()
        yield GaugeMetricFamily("dispatch_scheduler_lease_held",
                                "1 while this worker holds the scheduler lease, else 0",
                                value=1 if fence is not None else 0)
        yield GaugeMetricFamily("dispatch_scheduler_lease_token",
                                "the fencing token of the lease this worker holds (0: none)",
                                value=fence.token if fence is not None else 0)
        deposed = CounterMetricFamily(
            "dispatch_scheduler_deposed",
            "fenced work refused because the lease was lost while it ran, by work",
            labels=["work"])
        for work, count in sorted(keeper.deposed.items()):
            deposed.add_metric([work], count)
        yield deposed


class _ProcessMetrics(Collector):
    """The process-wide metrics (the control room's, the jobs', the webhooks'), read at each
    scrape from prometheus-client's default registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def worker_metrics(keeper: LeaseKeeper) -> CollectorRegistry:
    """The lease as this worker's keeper sees it, beside the process-wide metrics."""
    registry = CollectorRegistry()
    registry.register(LeaseMetrics(keeper))
    registry.register(_ProcessMetrics())
    return registry


def worker_readiness(registry_answers: Callable[[], bool], scheduler_started: Callable[[], bool],
                     commands_subscribed: Callable[[], bool], keeper: LeaseKeeper,
                     telemetry_subscribed: Callable[[], bool],
                     command_refusals: Callable[[], Mapping[str, Any]] | None = None,
                     ) -> Readiness:
    """Ready when the registry answers, the scheduler is started and the command answers are
    subscribed: a standby worker is ready to take over. Whether it holds the lease, the
    control room's subscription on the telemetry and the commands the broker refused
    (``commands``: ``ok`` false while it refuses them; docs/commands.md, section 10) are
    told beside it: a worker whose commands are refused still runs its other jobs, so it
    stays ready."""
    def details() -> dict[str, Any]:
        told: dict[str, Any] = {"lease_held": keeper.fence() is not None,
                                "telemetry_subscribed": telemetry_subscribed()}
        if command_refusals is not None:
            told["commands"] = dict(command_refusals())
        return told

    return Readiness({"registry": registry_answers, "scheduler": scheduler_started,
                      "commands": commands_subscribed}, details)
