"""The scheduler's job store: a job one scheduler adds is there for the next one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, func, select

from dispatch.registry.db import make_engine, upgrade
from dispatch.registry.models import SCHEDULER_JOBS_TABLE, Base, scheduler_jobs
from dispatch.scheduler import JOBSTORE_ALIAS, sql_jobstore

RUN_AT = datetime(2099, 1, 1, 18, 0, tzinfo=UTC)

_ADD_JOB = textwrap.dedent("""
    import sys
    from datetime import datetime, UTC
    from apscheduler.schedulers.background import BackgroundScheduler
    from dispatch.registry.db import make_engine
    from dispatch.registry.models import SCHEDULER_JOBS_TABLE
    from dispatch.scheduler import JOBSTORE_ALIAS, sql_jobstore

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(sql_jobstore(make_engine(sys.argv[1]), SCHEDULER_JOBS_TABLE),
                           JOBSTORE_ALIAS)
    scheduler.start(paused=True)
    scheduler.add_job("logging:getLogger", "date", id="dr-event-start", args=["dr"],
                      run_date=datetime(2099, 1, 1, 18, 0, tzinfo=UTC),
                      jobstore=JOBSTORE_ALIAS, misfire_grace_time=300)
    scheduler.shutdown()
""")


def test_a_job_added_in_one_process_is_seen_by_the_next_scheduler(db_url: str) -> None:
    upgrade(db_url)
    subprocess.run([sys.executable, "-c", _ADD_JOB, db_url], check=True, timeout=120)

    engine = make_engine(db_url)
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(sql_jobstore(engine, SCHEDULER_JOBS_TABLE), JOBSTORE_ALIAS)
    scheduler.start(paused=True)
    try:
        jobs = scheduler.get_jobs(jobstore=JOBSTORE_ALIAS)
        assert [(j.id, j.func_ref, j.args, j.next_run_time) for j in jobs] == [
            ("dr-event-start", "logging:getLogger", ("dr",), RUN_AT)]
        assert jobs[0].misfire_grace_time == 300
        scheduler.reschedule_job("dr-event-start", jobstore=JOBSTORE_ALIAS, trigger="date",
                                 run_date=RUN_AT + timedelta(hours=1))
    finally:
        scheduler.shutdown()
    with engine.connect() as connection:  # still usable after the scheduler let it go
        assert connection.scalar(select(func.count()).select_from(scheduler_jobs)) == 1
        assert connection.scalar(select(scheduler_jobs.c.next_run_time)) == (
            RUN_AT + timedelta(hours=1)).timestamp()
    engine.dispose()


def test_the_store_uses_the_migrated_table(engine: Engine) -> None:
    upgrade(engine)
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(sql_jobstore(engine, SCHEDULER_JOBS_TABLE), JOBSTORE_ALIAS)
    scheduler.start(paused=True)
    scheduler.shutdown()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
