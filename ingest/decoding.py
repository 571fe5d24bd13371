"""Where ingest decodes: in a thread of the service, or in a process of its own.

Decoding (SenML, validation, line protocol) is most of ingest's CPU, and Python's GIL lets
one process run one thread at a time: decoding in a thread competes with paho's network
thread for it, and every system call paho makes hands the GIL over and waits to get it
back. A decoding process runs beside the network thread instead; the service sends it the
messages that arrived while it decoded the previous ones and gets back their lines and a
summary (``ingest.pipeline.Decoded``). BENCHMARKS.md has the figures.

Both keep the order of messages (one decoder, first in first out), so the register
guard of ``estate.counters`` sees each meter's readings in order; it lives where the
decoding happens.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from estate.counters import CounterGuard
from estate.senml import DEFAULT_LIMITS, Limits
from ingest.pipeline import Decoded, decode_messages

log = logging.getLogger(__name__)

Messages = Sequence[tuple[str, bytes]]


class Decoder(Protocol):
    def __call__(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        """Decode ``messages`` (topic, payload) in order; dead letters numbered from
        ``sequence`` on."""

    def close(self) -> None: ...


class ThreadDecoder:
    """Decodes in the calling thread."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._counters = CounterGuard()

    def __call__(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        return decode_messages(messages, now_ms, sequence, self._limits, self._counters)

    def close(self) -> None:
        pass


# The decoding process's own state, set by its initializer.
_limits: Limits = DEFAULT_LIMITS
_counters: CounterGuard | None = None


def _initialise(limits: Limits) -> None:
    global _limits, _counters
    _limits, _counters = limits, CounterGuard()
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="orphan-watch",
                     daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this process when the service is gone (killed with SIGKILL, it cannot say so):
    an orphaned decoder would otherwise wait for work forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _decode(messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
    return decode_messages(messages, now_ms, sequence, _limits, _counters)


class ProcessDecoder:
    """Decodes in one child process (a ``ProcessPoolExecutor`` of one worker).

    A call blocks until the child answers, with the GIL released, so the network thread
    runs meanwhile. If the child dies, a new one is started and the messages are decoded
    again there: nothing is acknowledged before it is stored, so nothing is lost; the new
    child starts without the register history (as after a restart of the service).
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the service has threads (paho's, the HTTP server's) by now.
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_initialise, initargs=(self._limits,))
        pool.submit(_decode, [], 0, 0).result()  # start it now, not on the first message
        return pool

    def __call__(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        while True:
            try:
                return self._pool.submit(_decode, messages, now_ms, sequence).result()
            except BrokenProcessPool:
                log.error("the decoding process ended unexpectedly; starting another and "
                          "decoding its %d messages again", len(messages))
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()

    @property
    def pid(self) -> int:
        """The child's process id (for operations and tests)."""
        processes = list(self._pool._processes.values())  # no public accessor
        return processes[0].pid if processes and processes[0].pid else 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)
