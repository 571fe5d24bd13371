"""The scheduler lease: one holder at a time, handed over when the holder stops renewing."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from dispatch.registry.db import make_engine, upgrade
from dispatch.registry.lock import LeaseKeeper, SchedulerLease

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TTL = 30.0


def test_one_holder_until_the_lease_expires(engine: Engine) -> None:
    upgrade(engine)
    a = SchedulerLease(engine, "scheduler", "a", TTL)
    b = SchedulerLease(engine, "scheduler", "b", TTL)
    assert a.try_acquire(T0)
    assert not b.try_acquire(T0)
    assert a.try_acquire(T0 + timedelta(seconds=10))  # ours: taking it again renews it
    assert a.renew(T0 + timedelta(seconds=20))
    # a's lease now runs to T0 + 50 s
    assert not b.try_acquire(T0 + timedelta(seconds=49))
    assert b.try_acquire(T0 + timedelta(seconds=51))
    assert not a.renew(T0 + timedelta(seconds=52))
    assert not a.try_acquire(T0 + timedelta(seconds=52))
    b.release()
    assert a.try_acquire(T0 + timedelta(seconds=53))  # released: no need to wait
    a.release()
    a.release()  # releasing a lease one does not hold does nothing
    assert SchedulerLease(engine, "other", "b", TTL).try_acquire(T0)  # leases are separate


def _race(engine: Engine, names: list[str], now: datetime, lease: str) -> list[str]:
    barrier = threading.Barrier(len(names))
    winners: list[str] = []

    def contend(holder: str) -> None:
        candidate = SchedulerLease(engine, lease, holder, TTL)
        barrier.wait()
        if candidate.try_acquire(now):
            winners.append(holder)

    threads = [threading.Thread(target=contend, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return winners


def test_racing_threads_one_winner_per_round(engine: Engine) -> None:
    upgrade(engine)
    for round_ in range(10):
        lease = f"lease-{round_}"
        # The row does not exist yet: the inserts race.
        assert len(_race(engine, [f"t{i}" for i in range(6)], T0, lease)) == 1
        # The row exists and has expired: the updates race.
        later = T0 + timedelta(seconds=TTL + 1)
        assert len(_race(engine, [f"u{i}" for i in range(6)], later, lease)) == 1


def _contend_in_process(url: str, holder: str, lease: str, start: object,
                        results: object) -> None:
    engine = make_engine(url)
    candidate = SchedulerLease(engine, lease, holder, TTL)
    start.wait()  # type: ignore[attr-defined]
    results.put((holder, candidate.try_acquire(T0)))  # type: ignore[attr-defined]
    engine.dispose()


def test_racing_processes_one_winner(pg_url: str) -> None:
    upgrade(pg_url)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    procs = [context.Process(target=_contend_in_process,
                             args=(pg_url, f"p{i}", "scheduler", start, results))
             for i in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(won for _, won in outcomes) == 1


def test_keeper_hands_over_when_the_holder_stops_renewing(
        engine: Engine, record_property: Callable[[str, object], None]) -> None:
    upgrade(engine)
    # Renewals every 0.1 s against a 5 s lease: a busy machine would have to stall the
    # holder's thread for seconds before the other could take over while it still renews.
    ttl, interval = 5.0, 0.1
    events: list[tuple[str, str, float]] = []
    b_gained = threading.Event()

    def keeper(name: str, gained: threading.Event | None = None) -> LeaseKeeper:
        def on_gain() -> None:
            events.append((name, "gain", time.monotonic()))
            if gained:
                gained.set()

        def on_loss() -> None:
            events.append((name, "loss", time.monotonic()))

        return LeaseKeeper(SchedulerLease(engine, "scheduler", name, ttl), on_gain, on_loss,
                           interval_s=interval)

    a = keeper("a")
    a.start()
    deadline = time.monotonic() + 30
    while not a.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert a.held
    b = keeper("b", b_gained)
    b.start()
    time.sleep(5 * interval)  # several renewal rounds of both
    assert not b.held, "b took the lease while a was renewing it"
    stopped = time.monotonic()
    a.stop(release=False)  # a stops renewing, as a crashed process would
    assert b_gained.wait(30)
    handover = next(t for n, e, t in events if (n, e) == ("b", "gain")) - stopped
    b.stop()
    assert [(n, e) for n, e, _ in events] == [("a", "gain"), ("a", "loss"), ("b", "gain"),
                                              ("b", "loss")]
    record_property("handover_s", round(handover, 2))
