"""The ingest service: subscribe, decode, write a batch, then acknowledge it.

Delivery: MQTT 5 persistent session, QoS 1, manual acknowledgement. A message is
acknowledged only after every line it produced was written to the store (InfluxDB answered
2xx). If the process dies before that, the broker delivers it again; the re-delivered
readings have the same point identity, so they overwrite themselves: the effect is
exactly once.

Threads: paho's network thread only enqueues messages; one writer thread builds batches,
writes them and acknowledges. The queue cannot grow without bound: the broker never has
more than Receive Maximum un-acknowledged messages in flight to us.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from adapters.mqtt import InboundMessage
from estate.errors import StoreRejected, StoreUnavailable
from estate.ports import TimeSeriesStore
from estate.readings import Rejection
from estate.senml import DEFAULT_LIMITS, Limits
from ingest.pipeline import Outcome, dead_letter_line, handle_message

log = logging.getLogger(__name__)

MESSAGES = Counter("ingest_messages_total", "MQTT messages received")
READINGS = Counter("ingest_readings_written_total", "Readings written to the store")
REJECTED = Counter("ingest_rejected_total", "Messages or records dead-lettered", ["reason"])
WRITE_RETRIES = Counter("ingest_write_retries_total", "Batch writes retried")
BATCH_LINES = Histogram("ingest_batch_lines", "Lines per written batch",
                        buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000))

AckFunction = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class _Pending:
    message: InboundMessage
    outcome: Outcome


class Ingestor:
    """Owns the queue and the writer thread; the composition root owns the connection."""

    def __init__(self, store: TimeSeriesStore, ack: AckFunction, *, batch_size: int,
                 flush_interval_s: float, limits: Limits = DEFAULT_LIMITS) -> None:
        self._store = store
        self._ack = ack
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._limits = limits
        self._queue: queue.Queue[InboundMessage] = queue.Queue()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._sequence = 0
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)

    def submit(self, message: InboundMessage) -> None:
        """Called from the MQTT network thread for each delivered message."""
        self._queue.put(message)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Flush what was received and acknowledge it, then stop the writer.

        If the store stays unavailable for ``timeout_s``, the writer gives up: what it holds
        stays un-acknowledged and the broker delivers it again to the next worker.
        """
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abandon.set()
            self._thread.join(timeout_s)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._collect()
            if batch:
                self._write(batch)

    def _collect(self) -> list[_Pending]:
        batch: list[_Pending] = []
        lines = 0
        deadline: float | None = None
        while lines < self._batch_size:
            timeout = 0.1 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                message = self._queue.get(timeout=timeout)
            except queue.Empty:
                if deadline is None and self._stop.is_set():
                    break
                continue
            if deadline is None:
                deadline = time.monotonic() + self._flush_interval_s
            MESSAGES.inc()
            now_ms = time.time_ns() // 1_000_000
            outcome = handle_message(message.topic, message.payload, now_ms, self._sequence,
                                     self._limits)
            self._sequence += len(outcome.rejections)
            batch.append(_Pending(message, outcome))
            lines += len(outcome.lines)
        return batch

    def _write(self, batch: list[_Pending]) -> None:
        lines = [text for p in batch for text in p.outcome.lines]
        try:
            try:
                self._write_lines(lines)
            except StoreRejected as exc:
                log.error("store refused a batch of %d lines (%s); writing message by message",
                          len(lines), exc)
                self._write_one_by_one(batch)
        except _Abandoned:
            log.warning("shutting down with %d messages unwritten; the broker redelivers them",
                        len(batch))
            return
        BATCH_LINES.observe(len(lines))
        for pending in batch:
            READINGS.inc(len(pending.outcome.readings))
            for rejection in pending.outcome.rejections:
                REJECTED.labels(rejection.reason).inc()
                log.info("dead letter %s on %s: %s", rejection.reason, pending.message.topic,
                         rejection.detail)
            self._ack(pending.message.mid, pending.message.qos)

    def _write_lines(self, lines: list[str]) -> None:
        """Write, retrying while the store is unavailable; ``StoreRejected`` passes through."""
        delay = 0.5
        while True:
            try:
                self._store.write_lines(lines)
                return
            except StoreUnavailable as exc:
                # Keep the batch and its acknowledgements: nothing is lost while we wait, and
                # the broker sends nothing new past our Receive Maximum.
                if self._abandon.is_set():
                    raise _Abandoned from exc
                WRITE_RETRIES.inc()
                log.warning("store unavailable, retrying in %.1f s: %s", delay, exc)
                self._abandon.wait(delay)
                delay = min(delay * 2, 10.0)

    def _write_one_by_one(self, batch: list[_Pending]) -> None:
        """Isolate the messages the store refuses; dead-letter them, keep the rest."""
        for pending in batch:
            try:
                self._write_lines(pending.outcome.lines)
            except StoreRejected as exc:
                rejection = Rejection("store-rejected", str(exc))
                now_ms = time.time_ns() // 1_000_000
                self._write_lines([dead_letter_line(
                    pending.message.topic, None, rejection, pending.message.payload, now_ms,
                    self._sequence)])
                self._sequence += 1
                pending.outcome.readings.clear()
                pending.outcome.rejections[:] = [rejection]


class _Abandoned(Exception):
    """The store stayed unavailable through shutdown; the batch stays un-acknowledged."""
