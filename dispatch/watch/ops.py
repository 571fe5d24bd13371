"""How the worker's jobs run, in /metrics (docs/operations.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from dispatch.watch.metrics import JOB_RUNS

log = logging.getLogger(__name__)

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
