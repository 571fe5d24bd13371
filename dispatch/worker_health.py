"""The dispatch worker's ``/metrics`` and ``/health``, on ``DISPATCH_HTTP_HOST:DISPATCH_HTTP_PORT``.

Ready (``/health`` 200) when the registry answers, the scheduler is started (active or
standing by: a standby worker is ready to take over) and the command sender's connection
is subscribed to the answers. The metrics say which worker holds the scheduler lease,
under which fencing token, and how often fenced work was refused because the lease was
lost while it ran (``dispatch_scheduler_deposed_total``: a worker paused past its lease).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
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


def worker_metrics(keeper: LeaseKeeper) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(LeaseMetrics(keeper))
    return registry


def worker_readiness(registry_answers: Callable[[], bool], scheduler_started: Callable[[], bool],
                     commands_subscribed: Callable[[], bool], keeper: LeaseKeeper,
                     ) -> Readiness:
    return Readiness({"registry": registry_answers, "scheduler": scheduler_started,
                      "commands": commands_subscribed},
                     lambda: {"lease_held": keeper.fence() is not None})
