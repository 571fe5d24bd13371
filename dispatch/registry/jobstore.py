"""APScheduler's job store in the registry database (table ``scheduler_jobs``).

The table belongs to Alembic like every other (``models.scheduler_jobs``, revision 0001),
declared with the columns APScheduler 3.x's ``SQLAlchemyJobStore`` uses; the store's own
``create(checkfirst=True)`` at start then finds it and does nothing. A change of APScheduler
that changes the table shows up as a failing schema test, not as a silent second schema.

Jobs in this store are pickled: their function must be importable by reference
(``"package.module:function"``) and their arguments picklable, so lambdas and bound methods
of live objects stay in the scheduler's in-memory store (rebuilt at each start). What
belongs here is what must survive a restart or move to the next active scheduler: one-off
jobs at a set time (a demand-response event's start and end, a plan's execution).
"""

from __future__ import annotations

from typing import Final

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import Engine

from dispatch.registry.models import SCHEDULER_JOBS_TABLE

JOBSTORE_ALIAS: Final = "registry"


def registry_jobstore(engine: Engine) -> SQLAlchemyJobStore:
    """A job store on the registry's engine (migrated to head beforehand).

    APScheduler disposes the engine's connection pool when the scheduler shuts down; the
    engine stays usable (it opens new connections when asked).
    """
    return SQLAlchemyJobStore(engine=engine, tablename=SCHEDULER_JOBS_TABLE)
