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

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

from estate.bounded import TOPIC_CHARS, cut
from ingest.pipeline import DEFAULT_RULES, Decoded, Memory, Rules, decode_messages, refused

log = logging.getLogger(__name__)

Messages = Sequence[tuple[str, bytes]]


class Decoder(Protocol):
    def __call__(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        """Decode ``messages`` (topic, payload) in order; dead letters numbered from
        ``sequence`` on."""

    @property
    def alive(self) -> bool:
        """Whether it can decode now."""

    def close(self) -> None: ...


class ThreadDecoder:
    """Decodes in the calling thread."""

    def __init__(self, rules: Rules = DEFAULT_RULES) -> None:
        self._rules = rules
        self._memory = Memory.for_rules(rules)

    def __call__(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        return decode_messages(messages, now_ms, sequence, self._rules, self._memory)

    @property
    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _serve(connection: Connection, rules: Rules) -> None:
    """The decoding process: answer each request on ``connection`` until it closes."""
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="orphan-watch",
                     daemon=True).start()
    memory = Memory.for_rules(rules)
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the service closed its end, or is gone
            return
        if request is None:
            return
        messages, now_ms, sequence = request
        connection.send(decode_messages(messages, now_ms, sequence, rules, memory))


def _crashed(topic: str, payload: bytes, why: str, now_ms: int, sequence: int) -> Decoded:
    """The dead letter of a message that ended the decoding process."""
    return refused(topic, payload, "decoder-crashed",
                   f"decoding this message ended the decoding process ({why}), twice",
                   now_ms, sequence)


def _exit_with(parent: int) -> None:
    """End this process when the service is gone, whatever keeps the pipe open: an
    orphaned decoder would otherwise wait for work forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class _ChildDied(Exception):
    pass


Serve = Callable[[Connection, Rules], None]


class ProcessDecoder:
    """Decodes in one child process, over a pipe.

    A call blocks until the child answers, with the GIL released, so the network thread
    runs meanwhile. A plain pipe rather than a ``ProcessPoolExecutor``: the executor's
    queue, feeder and result threads cost a GIL hand-over each per call, which made
    ingest slower on single-reading messages.

    If the child dies, a new one is started and the messages are decoded again there, one
    at a time: a message that ends the child every time is dead-lettered
    (``decoder-crashed``) and the others are kept. Nothing is acknowledged before it is
    stored, so nothing is lost; the new child starts without the register history (as
    after a restart of the service). ``serve`` is the child's main loop (tests give one
    that dies on a chosen payload).
    """

    def __init__(self, rules: Rules = DEFAULT_RULES, serve: Serve | None = None) -> None:
        self._rules = rules
        self._serve = serve or _serve
        self._connection, self._process = self._start()

    def _start(self) -> tuple[Connection, BaseProcess]:
        # spawn, not fork: the service has threads (paho's, the HTTP server's) by now.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=self._serve, args=(theirs, self._rules),
                                  name="ingest-decoder", daemon=True)
        process.start()
        theirs.close()
        ours.send(([], 0, 0))  # wait until it runs, not until the first message
        ours.recv()
        return ours, process

    def __call__(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        try:
            return self._ask(messages, now_ms, sequence)
        except _ChildDied as died:
            log.error("the decoding process ended (%s) on a chunk of %d messages; decoding "
                      "them again one by one", died, len(messages))
        decoded = []
        for topic, payload in messages:
            try:
                result = self._ask([(topic, payload)], now_ms, sequence)[0]
            except _ChildDied as died:
                result = _crashed(topic, payload, str(died), now_ms, sequence)
                log.error("dead letter decoder-crashed on %s: %s", cut(topic, TOPIC_CHARS),
                          died)
            sequence += len(result.dead_letters)
            decoded.append(result)
        return decoded

    def _ask(self, messages: Messages, now_ms: int, sequence: int) -> list[Decoded]:
        """The child's answer; a new child, and ``_ChildDied``, if it died meanwhile."""
        try:
            self._connection.send((list(messages), now_ms, sequence))
            decoded: list[Decoded] = self._connection.recv()
            return decoded
        except (EOFError, OSError) as exc:
            self._connection.close()
            self._process.join(5)
            code = self._process.exitcode
            self._connection, self._process = self._start()
            raise _ChildDied(f"exit code {code}") from exc

    @property
    def alive(self) -> bool:
        """Whether the decoding process runs (a dead one is replaced at the next call)."""
        return self._process.is_alive()

    @property
    def pid(self) -> int:
        """The child's process id (for operations and tests)."""
        return self._process.pid or 0

    def close(self) -> None:
        with contextlib.suppress(OSError):  # it died already
            self._connection.send(None)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._connection.close()
