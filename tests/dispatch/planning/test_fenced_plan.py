"""A plan run under the scheduler's lease, fast: the registry is a real SQLite file, the store
and the broker the in-memory doubles of our own ports. A run that loses the lease while it
solves saves no plan and writes or sends no command; a run that keeps it saves both under
its token. The same with a worker process paused past its lease, against the real servers:
tests/dispatch/test_failover.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dispatch.control.sender import CommandSender
from dispatch.planning.forecasts import FORECAST_POLICY, QUANTITY
from dispatch.planning.rolling import PlanJob
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.lock import Fence, SchedulerLease
from dispatch.registry.models import AssetRow, AuditRow, CommandRow, PlanRow
from dispatch.settings import PlanningSettings
from estate.ports import SeriesRef
from estate.schema import FORECASTS
from tests.dispatch.registries import SPEC, sample_registry
from tests.doubles import InMemoryMessaging, InMemoryTimeSeriesStore

NOW_MS = int(datetime(2026, 11, 26, 7, 7, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 15 * 60_000
START_MS = NOW_MS - NOW_MS % STEP_MS + STEP_MS
SETTINGS = PlanningSettings(horizon_steps=8, time_limit_s=20)
TTL = 30.0


class WorkerLease:
    """The keeper's side a plan run sees (``FenceSource``), over a real lease row; with
    ``lost_while_solving`` another worker takes the lease over as soon as the run has
    taken its fence, as if this worker were paused past its lease mid-solve."""

    def __init__(self, registry: Registry, lost_while_solving: bool) -> None:
        self.mine = SchedulerLease(registry.engine, "dispatch-scheduler", "a", TTL)
        self.other = SchedulerLease(registry.engine, "dispatch-scheduler", "b", TTL)
        assert self.mine.try_acquire()
        self.lost_while_solving = lost_while_solving
        self.deposed: list[str] = []

    def fence(self) -> Fence | None:
        fence = self.mine.fence
        if self.lost_while_solving:
            later = datetime.now(UTC) + timedelta(seconds=TTL + 1)
            assert self.other.try_acquire(later)
        return fence

    def note_deposed(self, what: str) -> None:
        self.deposed.append(what)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = sample_registry(tmp_path)
    with registry.writing() as session:  # the battery runs without an operator
        battery = session.get(AssetRow, (SPEC.id, "battery"))
        assert battery is not None
        battery.control_mode = "auto"
    yield registry
    registry.close()


def _job(registry: Registry, lease: WorkerLease, messaging: InMemoryMessaging,
         ) -> tuple[PlanJob, CommandSender]:
    store = InMemoryTimeSeriesStore()
    for facility in ("textile", "foods", "metal", "utilities"):
        for k in range(SETTINGS.horizon_steps):
            store.put(SeriesRef(FORECASTS, FORECAST_POLICY),
                      {"estate": SPEC.id, "facility": facility, "quantity": QUANTITY},
                      {"value": 400.0, "issued_ms": NOW_MS - 60_000, "method": "profile+level"},
                      START_MS + k * STEP_MS)
    sender = CommandSender(messaging, CommandStore(registry), estates=[SPEC.id],
                           clock=lambda: NOW_MS)
    return PlanJob(store, registry, SPEC.id, SETTINGS, sender=sender, lease=lease), sender


def _count(registry: Registry, row: type[PlanRow] | type[CommandRow]) -> int:
    with registry.reading() as session:
        count = session.scalar(select(func.count()).select_from(row))
    assert isinstance(count, int)
    return count


def test_a_run_that_lost_the_lease_while_solving_saves_and_sends_nothing(
        registry: Registry) -> None:
    lease = WorkerLease(registry, lost_while_solving=True)
    messaging = InMemoryMessaging()
    job, _ = _job(registry, lease, messaging)
    assert job.run(now_ms=NOW_MS) is None
    assert lease.deposed == ["plan"]
    assert _count(registry, PlanRow) == 0
    assert _count(registry, CommandRow) == 0
    assert messaging.published == []


def test_a_run_under_a_current_lease_saves_its_plan_and_commands_under_its_token(
        registry: Registry) -> None:
    lease = WorkerLease(registry, lost_while_solving=False)
    messaging = InMemoryMessaging()
    job, _ = _job(registry, lease, messaging)
    outcome = job.run(now_ms=NOW_MS)
    assert outcome is not None
    assert lease.deposed == []
    [command] = outcome.commands
    assert [m.correlation_data for m in messaging.published] == [command.encode()]
    with registry.reading() as session:
        [saved] = session.scalars(select(AuditRow).where(AuditRow.action == "plan.draft"))
    assert saved.detail["lease_token"] == 1


def test_a_worker_that_does_not_hold_the_lease_does_not_plan(registry: Registry) -> None:
    class Standby(WorkerLease):
        def fence(self) -> Fence | None:
            return None

    lease = Standby(registry, lost_while_solving=False)
    messaging = InMemoryMessaging()
    job, _ = _job(registry, lease, messaging)
    assert job.run(now_ms=NOW_MS) is None
    assert lease.deposed == []
    assert _count(registry, PlanRow) == 0
    assert messaging.published == []
