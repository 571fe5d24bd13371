"""Only one active scheduler: a lease row in ``scheduler_leases``, taken and kept atomically.

A holder owns the lease while its row names it and has not expired. Taking it is one
``UPDATE ... WHERE name = :name AND (holder = :me OR expires_at < :now)`` (the database
serialises concurrent updates of the row, and PostgreSQL re-checks the condition after
waiting for a rival's update), or, when no row exists yet, an ``INSERT`` whose primary key
lets exactly one of several racing inserts win. So at most one holder at a time, on SQLite
and PostgreSQL alike, without database-specific locking.

The lease is also a **fencing token**: ``token`` grows by one on every takeover (a holder
that takes the lease after anyone else held it, or after it expired). Work started under
a lease carries its ``Fence`` (name, holder, token) and writes only in a transaction that
begins with ``check_fence``: an ``UPDATE`` of the lease row that matches only while the
row still names that holder and token and has not expired. The update takes the row's
write lock (the whole file's on SQLite), so a takeover waits for the fenced transaction
or the fenced transaction sees the takeover, never both; a worker paused past its lease
(a long solve, a stopped VM, a SIGSTOP) and resumed after another took over writes nothing.

Times are the holders' own clocks: the time to live must be well above the clock skew
between the hosts running dispatch (NTP keeps it to milliseconds) plus a renewal interval.

``LeaseKeeper`` runs a lease in a thread: it renews it, and calls back when the lease is
gained or lost, so the scheduler runs its jobs only while it holds the lease.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

from sqlalchemy import Engine, Table, and_, case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from dispatch.registry.db import one_writer
from dispatch.registry.models import LeaseRow
from estate.errors import Deposed

log = logging.getLogger(__name__)

_leases = cast(Table, LeaseRow.__table__)
# A released lease expired at the epoch: any holder may take it at once.
_RELEASED = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a piece of work was started under: it may write while this is current."""

    name: str
    holder: str
    token: int


def check_fence(session: Session, fence: Fence, now: datetime | None = None) -> None:
    """Raise ``Deposed`` unless ``fence`` is still the current, unexpired lease; call it
    first in the transaction whose writes it guards (it locks the lease row until the
    transaction ends, so no takeover can slip in between the check and the commit)."""
    now = now or datetime.now(UTC)
    current = session.execute(
        update(_leases)
        .where(_leases.c.name == fence.name, _leases.c.holder == fence.holder,
               _leases.c.token == fence.token, _leases.c.expires_at > now)
        .values(token=_leases.c.token)).rowcount  # type: ignore[attr-defined]
    if current != 1:
        raise Deposed(f"lease {fence.name} token {fence.token} of {fence.holder} is no "
                      "longer current")


class FenceSource(Protocol):
    """What fenced work asks of the lease: the fence to start under (None: the lease is
    not held here), and where to report that it was deposed while it worked."""

    def fence(self) -> Fence | None: ...

    def note_deposed(self, what: str) -> None: ...


class SchedulerLease:
    """The lease ``name`` as seen by ``holder`` (unique per process, e.g. host:pid:uuid)."""

    def __init__(self, engine: Engine, name: str, holder: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.engine = engine
        self.name = name
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_s)
        self.fence: Fence | None = None  # as of the last acquisition or renewal

    def try_acquire(self, now: datetime | None = None) -> bool:
        """Take the lease if it is free, expired or already ours; True if we hold it now.

        The token grows unless the lease was ours and unexpired (then this only renews it):
        work started under an earlier hold, or anyone else's, is fenced off."""
        now = now or datetime.now(UTC)
        expires = now + self.ttl
        ours = and_(_leases.c.holder == self.holder, _leases.c.expires_at >= now)
        with one_writer(), self.engine.begin() as connection:
            taken = connection.execute(
                update(_leases)
                .where(_leases.c.name == self.name,
                       or_(_leases.c.holder == self.holder, _leases.c.expires_at < now))
                .values(holder=self.holder, expires_at=expires,
                        token=case((ours, _leases.c.token),
                                   else_=_leases.c.token + 1))).rowcount
            token = connection.scalar(select(_leases.c.token).where(
                _leases.c.name == self.name, _leases.c.holder == self.holder))
        if taken and token is not None:
            self.fence = Fence(self.name, self.holder, int(token))
            return True
        try:
            with one_writer(), self.engine.begin() as connection:
                connection.execute(insert(_leases).values(
                    name=self.name, holder=self.holder, expires_at=expires, token=1))
        except IntegrityError:
            self.fence = None
            return False  # the row exists: another holder has the lease (or just took it)
        self.fence = Fence(self.name, self.holder, 1)
        return True

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease if we still hold it; False if another holder has taken it."""
        now = now or datetime.now(UTC)
        fence = self.fence
        with one_writer(), self.engine.begin() as connection:
            kept = connection.execute(
                update(_leases)
                .where(_leases.c.name == self.name, _leases.c.holder == self.holder,
                       *([_leases.c.token == fence.token] if fence else []))
                .values(expires_at=now + self.ttl)).rowcount
        if not kept:
            self.fence = None
        return bool(kept)

    def release(self) -> None:
        """Give the lease up at once (if we hold it), so another holder need not wait.

        The row stays, expired, so the next holder's token still grows past ours."""
        with one_writer(), self.engine.begin() as connection:
            connection.execute(update(_leases).where(_leases.c.name == self.name,
                                                     _leases.c.holder == self.holder)
                               .values(expires_at=_RELEASED))
        self.fence = None


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
        # Work refused because the lease was lost while it ran, by what it was refused
        # (``plan``, ...): a metric of the worker (dispatch.__main__).
        self.deposed: Counter[str] = Counter()
        self._deposed_lock = threading.Lock()

    def fence(self) -> Fence | None:
        """The fence for work starting now, or None when this worker does not hold the lease."""
        return self.lease.fence if self.held else None

    def note_deposed(self, what: str) -> None:
        """Fenced work found the lease gone (``Deposed``): say so and count it."""
        with self._deposed_lock:
            self.deposed[what] += 1
        log.warning("lease %s: %s was deposed while it worked (another worker holds the "
                    "lease now): nothing saved, nothing sent", self.lease.name, what)

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
