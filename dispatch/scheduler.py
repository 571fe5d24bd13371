"""The one module that knows APScheduler (3.x): the rest of dispatch registers plain jobs.

Every job coalesces missed runs into one, never overlaps itself and may start late by its
grace time; a job that raises is logged and runs again at its next time.

Several dispatch workers may run; only the one holding the registry's scheduler lease runs
jobs (``dispatch.registry.lock``). Each worker starts its scheduler paused and the lease
keeper resumes it while the lease is held. Extra job stores (the registry's SQL store, for
one-off jobs that must survive a restart, such as a re-plan requested by an event) are
passed in; the periodic jobs are rebuilt by every worker at start and live in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

JOBSTORE_ALIAS: Final = "registry"
"""The alias of the registry's job store (``sql_jobstore``) among the scheduler's."""


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
    # Or run first at this time, and every ``every_s`` from it (a job that must keep
    # step with the clock, such as the plan for each quarter-hour).
    first_run_at: datetime | None = None


class Scheduler:
    def __init__(self, jobs: list[Job], jobstores: dict[str, BaseJobStore] | None = None,
                 ) -> None:
        # Two workers: a slow job (an optimisation) must not hold up a quick check.
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(2)},
            jobstores={"default": MemoryJobStore(), **(jobstores or {})}, timezone="UTC")
        for job in jobs:
            self._scheduler.add_job(job.func, "interval", seconds=job.every_s, id=job.id,
                                    coalesce=True, max_instances=1,
                                    misfire_grace_time=job.misfire_grace_s,
                                    replace_existing=True, name=job.id,
                                    next_run_time=job.first_run_at or datetime.now(UTC)
                                    + timedelta(seconds=job.first_run_after_s))
        self._jobs = jobs
        self.started = False

    def start(self, paused: bool = False) -> None:
        self._scheduler.start(paused=paused)
        self.started = True
        log.info("scheduler %s %d jobs: %s", "holding" if paused else "running",
                 len(self._jobs), ", ".join(j.id for j in self._jobs))

    def pause(self) -> None:
        """Run nothing (the lease went to another worker)."""
        self._scheduler.pause()
        log.info("scheduler paused: another worker holds the lease")

    def resume(self) -> None:
        """Run jobs again; missed runs are coalesced into one, within their grace."""
        self._scheduler.resume()
        log.info("scheduler active: this worker holds the lease")

    def run_soon(self, job_id: str) -> None:
        """Run a periodic job now, out of turn (an event: an asset went offline, a new
        demand-response order); its regular times stay as they were."""
        job = self._scheduler.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        self._scheduler.add_job(job.func, id=f"{job_id}-now", name=f"{job_id} (event)",
                                replace_existing=True, coalesce=True, max_instances=1,
                                misfire_grace_time=60)

    def stop(self) -> None:
        self.started = False
        self._scheduler.shutdown(wait=True)



def before_each_step(every_s: float, lead_s: float, now: datetime | None = None,
                     ) -> datetime | None:
    """The first run time of a job that runs ``lead_s`` before each ``every_s`` boundary of
    the clock (UTC epoch), or None when ``every_s`` is not a whole number of minutes, so
    the job cannot keep step with the clock and simply starts now."""
    if every_s < 60 or every_s % 60:
        return None
    now = now or datetime.now(UTC)
    period = timedelta(seconds=every_s)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    boundary = epoch + ((now - epoch) // period + 1) * period
    first = boundary - timedelta(seconds=lead_s)
    return first if first > now else first + period


def sql_jobstore(engine: object, table: str) -> BaseJobStore:
    """APScheduler's job store in the registry database: ``engine`` is the registry's
    (``dispatch.registry.db.Registry.engine``), ``table`` the one Alembic made for it
    (``dispatch.registry.models.SCHEDULER_JOBS_TABLE``), with the columns APScheduler 3.x's
    ``SQLAlchemyJobStore`` uses; the store's own ``create(checkfirst=True)`` at start then
    finds it and does nothing, and a change of APScheduler that changes the table shows up
    as a failing schema test, not as a silent second schema.

    Jobs in this store are pickled: their function must be importable by reference
    (``"package.module:function"``) and their arguments picklable, so lambdas and bound
    methods of live objects stay in the in-memory store (rebuilt at each start). What
    belongs here is what must survive a restart or move to the next active scheduler:
    one-off jobs at a set time (a demand-response event's start and end). APScheduler
    disposes the engine's pool at shutdown; the engine stays usable.
    """
    return SQLAlchemyJobStore(engine=engine, tablename=table)
