"""The scheduler lease as a fencing token, on SQLite and PostgreSQL: the token grows on every
takeover and only on a takeover, and a transaction fenced by a token that is no longer
current (taken over, expired, or an earlier hold of the same worker) writes nothing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from dispatch.registry.db import Registry, upgrade
from dispatch.registry.lock import Fence, LeaseKeeper, SchedulerLease, check_fence
from dispatch.registry.models import AuditRow, LeaseRow
from estate.errors import Deposed

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = 30.0


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _token(lease: SchedulerLease) -> int:
    assert lease.fence is not None
    return lease.fence.token


def test_the_token_grows_on_every_takeover_and_only_then(engine: Engine) -> None:
    upgrade(engine)
    a = SchedulerLease(engine, "scheduler", "a", TTL)
    b = SchedulerLease(engine, "scheduler", "b", TTL)
    assert a.try_acquire(T0)
    assert _token(a) == 1
    assert a.renew(_at(10))
    assert a.try_acquire(_at(20)), "ours and unexpired: taking it again only renews it"
    assert _token(a) == 1
    assert b.try_acquire(_at(51))  # a's lease ran to T0 + 50 s
    assert _token(b) == 2
    assert not a.renew(_at(52))
    assert a.fence is None
    b.release()
    assert a.try_acquire(_at(53)), "released: no need to wait"
    assert _token(a) == 3, "a released lease keeps its row, so the token still grows"
    # Expired without anyone else taking it: taking it again is a new hold all the same.
    assert a.try_acquire(_at(53 + TTL + 1))
    assert _token(a) == 4


def test_a_fenced_transaction_writes_only_while_its_token_is_current(engine: Engine) -> None:
    upgrade(engine)
    registry = Registry(engine)
    a = SchedulerLease(engine, "scheduler", "a", TTL)
    b = SchedulerLease(engine, "scheduler", "b", TTL)
    now = datetime.now(UTC)
    assert a.try_acquire(now)
    first = a.fence
    assert first is not None

    def fenced_write(fence: Fence, what: str) -> None:
        with registry.writing() as session:
            check_fence(session, fence)
            session.add(AuditRow(at=now, actor="test", action=what, subject_type="test",
                                 subject_id="1", detail={}))

    fenced_write(first, "under-a")
    # a is paused past its lease; b takes over.
    assert b.try_acquire(now + timedelta(seconds=TTL + 1))
    with pytest.raises(Deposed, match="token 1 of a is no longer current"):
        fenced_write(first, "a-after-takeover")
    # a comes back and takes the lease again: its old work is still fenced off.
    b.release()
    assert a.try_acquire(now)
    assert _token(a) == 3
    with pytest.raises(Deposed):
        fenced_write(first, "a-old-work")
    current = a.fence
    assert current is not None
    fenced_write(current, "a-new-work")
    with registry.reading() as session:
        written = list(session.scalars(select(AuditRow.action).where(
            AuditRow.subject_type == "test").order_by(AuditRow.id)))
    assert written == ["under-a", "a-new-work"]


def test_an_expired_lease_fences_even_when_nobody_took_it_over(engine: Engine) -> None:
    upgrade(engine)
    registry = Registry(engine)
    lease = SchedulerLease(engine, "scheduler", "a", TTL)
    assert lease.try_acquire(datetime.now(UTC) - timedelta(seconds=TTL + 5))
    fence = lease.fence
    assert fence is not None
    with pytest.raises(Deposed), registry.writing() as session:
        check_fence(session, fence)


def test_renewal_runs_on_its_own_while_a_job_holds_on(engine: Engine) -> None:
    """A job that runs longer than the lease (a long solve) does not lose it: the keeper's
    thread renews it meanwhile, and the job's fence stays current."""
    upgrade(engine)
    registry = Registry(engine)
    ttl = 1.0
    keeper = LeaseKeeper(SchedulerLease(engine, "scheduler", "a", ttl), lambda: None,
                         lambda: None, interval_s=0.1)
    keeper.start()
    try:
        deadline = time.monotonic() + 30
        while keeper.fence() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        fence = keeper.fence()
        assert fence is not None
        job_done = threading.Event()
        results: list[str] = []

        def job() -> None:
            with registry.reading() as session:
                first = session.scalar(select(LeaseRow.expires_at))
            # Outlast the lease by far; the keeper must push its expiry on meanwhile.
            while time.monotonic() < deadline:
                with registry.reading() as session:
                    latest = session.scalar(select(LeaseRow.expires_at))
                assert first is not None
                if latest is not None and latest > first + timedelta(seconds=3 * ttl):
                    break
                time.sleep(0.05)
            try:
                with registry.writing() as session:
                    check_fence(session, fence)
                results.append("saved")
            except Deposed:
                results.append("deposed")
            job_done.set()

        worker = threading.Thread(target=job)
        worker.start()
        assert job_done.wait(60)
        worker.join()
        assert results == ["saved"]
        assert keeper.deposed == {}
    finally:
        keeper.stop()
    with registry.reading() as session:
        assert session.scalar(select(func.count()).select_from(LeaseRow)) == 1


def test_a_deposed_worker_is_counted_and_said(engine: Engine,
                                             caplog: pytest.LogCaptureFixture) -> None:
    upgrade(engine)
    keeper = LeaseKeeper(SchedulerLease(engine, "scheduler", "a", TTL), lambda: None,
                         lambda: None)
    keeper.note_deposed("plan")
    keeper.note_deposed("plan")
    assert keeper.deposed == {"plan": 2}
    assert "plan was deposed while it worked" in caplog.text
    assert keeper.fence() is None, "a keeper not started holds nothing"
