"""The one module that knows APScheduler (3.x): the rest of dispatch registers plain jobs.

Every job coalesces missed runs into one, never overlaps itself and may start late by its
grace time; a job that raises is logged and runs again at its next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    func: Callable[[], object]
    every_s: float
    # A run that could not start on time (process paused, machine busy) still runs if it
    # is at most this late; older runs are coalesced into the next one.
    misfire_grace_s: int = 60
    # Wait this long before the first run (a check that needs data waits for some).
    first_run_after_s: float = 0.0


class Scheduler:
    def __init__(self, jobs: list[Job]) -> None:
        # Two workers: a slow job (an optimisation) must not hold up a quick check.
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(2)},
                                              timezone="UTC")
        for job in jobs:
            self._scheduler.add_job(job.func, "interval", seconds=job.every_s, id=job.id,
                                    coalesce=True, max_instances=1,
                                    misfire_grace_time=job.misfire_grace_s,
                                    replace_existing=True, name=job.id,
                                    next_run_time=datetime.now(UTC)
                                    + timedelta(seconds=job.first_run_after_s))
        self._jobs = jobs

    def start(self) -> None:
        self._scheduler.start()
        log.info("scheduler running %d jobs: %s", len(self._jobs),
                 ", ".join(j.id for j in self._jobs))

    def stop(self) -> None:
        self._scheduler.shutdown(wait=True)

