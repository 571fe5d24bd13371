"""Solving in a process of its own, so the wall-clock bound holds whatever HiGHS does.

HiGHS honours its time limit between iterations and nodes, but not everywhere: a model
with a NaN cost sent its dual simplex into a loop that ignored both the time limit and the
interrupt callbacks (seen with highspy 1.16: still running at 3x the limit). A thread
cannot be stopped from outside; a process can. So ``optimise`` hands the problem to a
solving process and waits at most ``deadline_s(time_limit)``; past it, the process is
killed and the plan is the best one it reported so far, or the baseline.

The process is started once and reused, one solve at a time; a second caller while it is
busy gets a second process. It is a fresh interpreter running this module (not a fork:
the worker has threads by then; not multiprocessing's spawn, which imports the caller's
main script again), talking over a pipe of pickled messages. It rebuilds the
model from the problem (a few hundredths of a second; the rounding rules it needs are
closures over the build and do not travel) and reports each better plan it finds before
its answer, so a kill loses only what came after the last report.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from dispatch.optimiser.problem import FloatArray

log = logging.getLogger(__name__)

MARGIN_SHARE: Final = 0.1
MARGIN_MIN_S: Final = 2.0
"""The bound is the time limit plus 10% of it, at least 2 s. Why: HiGHS checks its clock
between simplex iterations and branch-and-bound nodes, which on the largest benchmark
estate are up to about a second apart; handing the plan back takes a few hundredths."""
IDLE_PROCESSES: Final = 2
"""Solving processes kept waiting for the next solve. Why 2: the plan job solves one
problem at a time; a second is for an occasional overlap (a test, a tool)."""
STOP_RESERVE_S: Final = 0.2
"""A solve is stopped this long before its bound, so that stopping it (a kill, the join)
fits inside the bound too."""
_START_TIMEOUT_S: Final = 60.0
"""How long a new process may take to import numpy, scipy and highspy and answer."""


def deadline_s(time_limit_s: float) -> float:
    """The wall-clock bound of a solve asked to finish within ``time_limit_s``."""
    return time_limit_s + max(MARGIN_MIN_S, MARGIN_SHARE * time_limit_s)


Best = tuple[FloatArray, float, "float | None"]
"""A plan the solving process found: solution vector, objective, MIP gap if known."""
Report = Callable[[FloatArray, float, "float | None"], None]


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: ``value`` (the function's result) or ``failure``; ``best`` is the
    last plan reported before (on a kill, the only thing there is)."""

    value: Any
    failure: str
    overran: bool
    best: Best | None
    seconds: float
    """From sending the problem to the answer (or the kill)."""
    start_seconds: float
    """Starting a solving process first (the first solve, or after a kill)."""


def _exit_with(parent: int) -> None:
    """End this process when the one that started it is gone, whatever else holds it."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def serve(connection: Connection) -> None:
    """The solving process: run each ``(function, args)`` it is sent, report, answer."""
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="orphan-watch",
                     daemon=True).start()

    def report(x: FloatArray, objective: float, gap: float | None) -> None:
        connection.send(("best", (x, objective, gap)))

    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        if request == "ready?":
            connection.send(("ready", None))
            continue
        function, args = request
        try:
            connection.send(("done", function(*args, report)))
        except Exception as exc:  # the answer to a failed solve, not a crash of this loop
            log.exception("solve failed in the solving process")
            connection.send(("failed", f"{type(exc).__name__}: {exc}"))


_MAIN: Final = ("import sys\n"
                 "from multiprocessing.connection import Connection\n"
                 f"from {__name__} import serve\n"
                 "serve(Connection(int(sys.argv[1])))\n")
"""The solving process's program (``-c``: running this module with ``-m`` would import it
twice, once through the package)."""


class _Worker:
    def __init__(self) -> None:
        ours, theirs = multiprocessing.Pipe()
        # the same interpreter and import path as this process; HiGHS's banner on stdout
        # is dropped, the process's log lines go to this process's stderr
        path = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MAIN, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path})
        theirs.close()
        self.connection: Connection = ours
        # wait until it has imported everything, so a solve's clock starts at the solve
        ours.send("ready?")
        if not ours.poll(_START_TIMEOUT_S):
            self.kill()
            raise RuntimeError(f"the solving process did not start in {_START_TIMEOUT_S} s")
        ours.recv()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.send(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1.0)
        self.kill()

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)
        self.connection.close()


class _Pool:
    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[_Worker, float]:
        """An idle process, or a new one; and the seconds it took to start (0 if idle)."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker, 0.0
                worker.kill()
        began = time.perf_counter()
        return _Worker(), time.perf_counter() - began

    def give(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < IDLE_PROCESSES:
                self._idle.append(worker)
                return
        worker.stop()

    def close(self) -> None:
        """Stop the idle processes (at exit: none outlives the process that started it)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


_POOL = _Pool()
atexit.register(_POOL.close)
_busy: dict[int, _Worker] = {}
_busy_lock = threading.Lock()


def solving_pids() -> list[int]:
    """Process ids of the solving processes at work now (for operations and tests)."""
    with _busy_lock:
        return [w.process.pid for w in _busy.values()]


def call(function: Callable[..., Any], args: tuple[Any, ...], seconds: float) -> Answer:
    """``function(*args, report)`` in a solving process, waiting at most ``seconds``.

    ``function`` must be importable by name (it travels by reference); ``report`` lets it
    hand back each better plan before its answer.
    """
    try:
        worker, started = _POOL.take()
    except (RuntimeError, OSError) as exc:
        return Answer(None, f"no solving process: {exc}", False, None, 0.0, 0.0)
    began = time.perf_counter()
    key = id(worker)
    with _busy_lock:
        _busy[key] = worker
    best: Best | None = None
    healthy = False
    try:
        worker.connection.send((function, args))
        while True:
            left = seconds - STOP_RESERVE_S - (time.perf_counter() - began)
            if left <= 0 or not worker.connection.poll(left):
                return Answer(None, f"the solve passed its bound of {seconds:.1f} s and was "
                                    "stopped", True, best, time.perf_counter() - began, started)
            kind, payload = worker.connection.recv()
            if kind == "best":
                best = payload
                continue
            healthy = True
            failure = payload if kind == "failed" else ""
            value = payload if kind == "done" else None
            return Answer(value, failure, False, best, time.perf_counter() - began, started)
    except (EOFError, OSError) as exc:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(1.0)
        return Answer(None, f"the solving process ended (exit code {worker.process.returncode}"
                            f", {type(exc).__name__})", False, best,
                      time.perf_counter() - began, started)
    finally:
        with _busy_lock:
            _busy.pop(key, None)
        if healthy:
            _POOL.give(worker)
        else:
            worker.kill()
