"""The worker's own state in /metrics and /health: which worker holds the scheduler
lease, how its jobs run, and whether the control room can work (docs/operations.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from dispatch.registry.db import Registry
from dispatch.watch.metrics import JOB_RUNS
from estate.readiness import Readiness

log = logging.getLogger(__name__)

LEASE_HELD = Gauge("dispatch_scheduler_lease_held",
                   "1 on the worker holding the scheduler lease, else 0")
LAST_SUCCESS = Gauge("dispatch_job_last_success_timestamp_seconds",
                     "When each job last ran to the end", ["job"])


def counted(job_id: str, func: Callable[[], object]) -> Callable[[], object]:
    """``func`` with its runs counted (``dispatch_job_runs_total{job, result}``); a
    failure is counted and raised again for the scheduler to log."""

    def run() -> object:
        try:
            result = func()
        except Exception:
            JOB_RUNS.labels(job_id, "failed").inc()
            raise
        JOB_RUNS.labels(job_id, "ok").inc()
        LAST_SUCCESS.labels(job_id).set(time.time())
        return result

    return run


def registry_answers(registry: Registry) -> Callable[[], bool]:
    def check() -> bool:
        with registry.reading() as session:
            session.connection()
        return True

    return check


def worker_readiness(registry: Registry, lease_held: Callable[[], bool],
                     subscribed: Callable[[], bool]) -> Readiness:
    """Ready when the registry answers: a standby worker is ready to take over. The lease
    and the control room's subscription are told beside it."""
    return Readiness({"registry": registry_answers(registry)},
                     lambda: {"lease_held": lease_held(),
                              "telemetry_subscribed": subscribed()})
