"""Limits kept in the web process: failed logins per account and per address, and live
streams per session.

They are per process: behind several web replicas an attacker gets each replica's
allowance, which is still a handful of guesses a minute per account. Memory is bounded
whatever the traffic: the oldest keys are forgotten first beyond ``max_keys``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Allowance:
    """At most ``failures`` failed attempts per ``window_s`` seconds."""

    failures: int
    window_s: float


class FailureLimiter:
    """Counts failures per key in a sliding window; a key over its allowance is refused
    until its oldest failure leaves the window."""

    def __init__(self, allowance: Allowance, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._allowance = allowance
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float:
        """0 if ``key`` may try now, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            seen = self._failures.get(key)
            if seen is None:
                return 0.0
            while seen and seen[0] <= now - self._allowance.window_s:
                seen.popleft()
            if len(seen) < self._allowance.failures:
                return 0.0
            return max(seen[0] + self._allowance.window_s - now, 0.001)

    def failed(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            seen = self._failures.pop(key, None) or deque()
            seen.append(now)
            # Only the newest ``failures`` matter for the next decision.
            while len(seen) > self._allowance.failures:
                seen.popleft()
            self._failures[key] = seen
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class StreamSlots:
    """Open live streams, at most ``per_key`` per session (or token) and ``total`` in all."""

    def __init__(self, per_key: int, total: int) -> None:
        self.per_key = per_key
        self.total = total
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._count = 0

    def acquire(self, key: str) -> str | None:
        """None if a stream may open (it then holds a slot), else the reason it may not."""
        with self._lock:
            if self._count >= self.total:
                return f"the web view serves at most {self.total} live streams"
            held = self._open.get(key, 0)
            if held >= self.per_key:
                return f"at most {self.per_key} live streams per session"
            self._open[key] = held + 1
            self._count += 1
            return None

    def release(self, key: str) -> None:
        with self._lock:
            held = self._open.get(key, 0)
            if held <= 1:
                self._open.pop(key, None)
            else:
                self._open[key] = held - 1
            self._count = max(self._count - 1, 0)

    @property
    def open(self) -> int:
        return self._count
