"""Only one active scheduler: a lease row in ``scheduler_leases``, taken and kept atomically.

A holder owns the lease while its row names it and has not expired. Taking it is one
``UPDATE ... WHERE name = :name AND (holder = :me OR expires_at < :now)`` (the database
serialises concurrent updates of the row, and PostgreSQL re-checks the condition after
waiting for a rival's update), or, when no row exists yet, an ``INSERT`` whose primary key
lets exactly one of several racing inserts win. So at most one holder at a time, on SQLite
and PostgreSQL alike, without database-specific locking.

Times are the holders' own clocks: the time to live must be well above the clock skew
between the hosts running dispatch (NTP keeps it to milliseconds) plus a renewal interval.

``LeaseKeeper`` runs a lease in a thread: it renews it, and calls back when the lease is
gained or lost, so the scheduler runs its jobs only while it holds the lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError, OperationalError

from dispatch.registry.models import LeaseRow

log = logging.getLogger(__name__)

_leases = cast(Table, LeaseRow.__table__)


class SchedulerLease:
    """The lease ``name`` as seen by ``holder`` (unique per process, e.g. host:pid:uuid)."""

    def __init__(self, engine: Engine, name: str, holder: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.engine = engine
        self.name = name
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_s)

    def try_acquire(self, now: datetime | None = None) -> bool:
        """Take the lease if it is free, expired or already ours; True if we hold it now."""
        now = now or datetime.now(UTC)
        expires = now + self.ttl
        with self.engine.begin() as connection:
            taken = connection.execute(
                update(_leases)
                .where(_leases.c.name == self.name,
                       or_(_leases.c.holder == self.holder, _leases.c.expires_at < now))
                .values(holder=self.holder, expires_at=expires)).rowcount
        if taken:
            return True
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(_leases).values(
                    name=self.name, holder=self.holder, expires_at=expires))
        except IntegrityError:
            return False  # the row exists: another holder has the lease (or just took it)
        return True

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease if we still hold it; False if another holder has taken it."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as connection:
            kept = connection.execute(
                update(_leases)
                .where(_leases.c.name == self.name, _leases.c.holder == self.holder)
                .values(expires_at=now + self.ttl)).rowcount
        return bool(kept)

    def release(self) -> None:
        """Give the lease up at once (if we hold it), so another holder need not wait."""
        with self.engine.begin() as connection:
            connection.execute(delete(_leases).where(_leases.c.name == self.name,
                                                     _leases.c.holder == self.holder))


LeaseCallback = Callable[[], None]


class LeaseKeeper:
    """Keeps trying for a lease and renews it while held, in a daemon thread.

    ``on_gain`` runs when this holder takes the lease, ``on_loss`` when it loses it (another
    holder took it after a renewal failed or came too late) and when the keeper stops
    while holding it. A database error counts as not holding: the keeper reports a loss,
    since it cannot prove it still holds the lease, and tries again next round.
    """

    def __init__(self, lease: SchedulerLease, on_gain: LeaseCallback, on_loss: LeaseCallback,
                 interval_s: float | None = None) -> None:
        self.lease = lease
        self._on_gain = on_gain
        self._on_loss = on_loss
        # Three tries per time to live: one late or failed renewal does not lose the lease.
        self.interval_s = interval_s or lease.ttl.total_seconds() / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-{lease.name}")
        self.held = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop keeping the lease; with ``release`` False it simply expires (as on a crash)."""
        self._stop.set()
        self._thread.join()
        if self.held:
            self.held = False
            self._on_loss()
            if release:
                self.lease.release()

    def _round(self) -> None:
        try:
            holds = self.lease.renew() if self.held else self.lease.try_acquire()
        except OperationalError:
            log.warning("lease %s: registry unreachable", self.lease.name, exc_info=True)
            holds = False
        except Exception:  # any other failure is as unproven a hold: never two schedulers
            log.exception("lease %s: renewal failed", self.lease.name)
            holds = False
        if holds and not self.held:
            log.info("lease %s taken by %s", self.lease.name, self.lease.holder)
            self.held = True
            self._on_gain()
        elif self.held and not holds:
            log.warning("lease %s lost by %s", self.lease.name, self.lease.holder)
            self.held = False
            self._on_loss()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception:
                # A callback failed; the thread must live on, or a lost lease would leave
                # this worker's scheduler running beside the next holder's.
                log.exception("lease %s: keeper round failed", self.lease.name)
            self._stop.wait(self.interval_s)
