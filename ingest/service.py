"""The ingest service: subscribe, decode, write a batch (or spool it), then acknowledge.

Delivery: MQTT 5 persistent session, QoS 1, manual acknowledgement. A message is
acknowledged only after every line it produced is durably stored: InfluxDB answered 2xx,
or the local spool has the lines on disk (fsynced). If the process dies before that, the
broker delivers the message again; the re-delivered readings have the same point
identity, so they overwrite themselves: the effect is exactly once.

While the spool holds anything, new batches go to the spool behind it, so readings reach
the store in the order they were received; a replayer thread drains it oldest first and
asks for the replayed time range to be rolled up again. When the spool is full, batches
stay unacknowledged (the broker queues behind them): nothing is dropped here.

Threads: paho's network thread only enqueues; the decoder thread hands what arrived to the
decoder (``ingest.decoding``: a process of its own, or this thread) and builds batches
(``ingest.intake``); the writer thread writes and acknowledges; the replayer thread
drains the spool. What it counts and logs: ``ingest.metrics``. The queue
cannot grow without bound: the broker never has more than Receive Maximum un-acknowledged
messages in flight to us.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from log_rate_limit import RateLimit

from adapters.mqtt import InboundMessage
from estate.bounded import TOPIC_CHARS, cut
from estate.errors import StoreRejected, StoreUnavailable
from estate.lineprotocol import line
from estate.ports import TimeSeriesStore
from estate.schema import ROLLUP_REQUESTS
from estate.topics import Channel
from ingest.intake import WRITER_SEQUENCE_BASE, Intake, Pending
from ingest.metrics import (
    ACK_LATENCY,
    BATCH_LINES,
    COUNTER_EVENTS,
    DEAD_LETTERS_WRITTEN,
    READING_AGE,
    READINGS,
    REJECTED,
    REPLAYED,
    SPOOL_BYTES,
    SPOOLED,
    WRITE_RETRIES,
    refusals,
)
from ingest.pipeline import (
    DEFAULT_RULES,
    DETAIL_CHARS,
    DeadLetter,
    Rules,
    dead_letter_line,
    device_of,
    line_identity,
)
from ingest.spool import Segment, Spool, SpoolFull

log = logging.getLogger(__name__)

AckFunction = Callable[[int, int], None]
EventHandler = Callable[[str, dict[str, Any]], None]
"""Receives operational events (``spool-high``, ``spool-full``, ``spool-drained``)."""

# Warn (log, metric, event) when the spool passes this share of its bound: an operator
# then has time to bring InfluxDB back before ingest has to stop acknowledging.
SPOOL_WARN_SHARE = 0.8


class _Abandoned(Exception):
    """Shutdown came while the batch could be neither written nor spooled."""


class Ingestor:
    """Owns the intake, the writer and the replayer; the composition root owns the rest."""

    def __init__(self, store: TimeSeriesStore, ack: AckFunction, *, batch_size: int,
                 flush_interval_s: float, rules: Rules = DEFAULT_RULES,
                 spool: Spool | None = None, on_event: EventHandler | None = None,
                 source: str = "ingest", late_after_s: float = 600.0,
                 decode_in_process: bool = False,
                 max_queued_bytes: int = 16 << 20) -> None:
        self._store = store
        self._ack = ack
        self._spool = spool
        self._on_event = on_event or (lambda kind, data: None)
        self._source = source
        self._late_after_ms = round(late_after_s * 1000)
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._intake = Intake(rules, batch_size=batch_size, flush_interval_s=flush_interval_s,
                              decode_in_process=decode_in_process,
                              max_queued_bytes=max_queued_bytes, stop=self._stop,
                              abandon=self._abandon)
        self._sequence = 0  # the writer's and the replayer's dead letters
        self._sequence_lock = threading.Lock()
        self._spool_warned = False
        self.last_store_error: str | None = None
        # Two stages: the decoder turns messages into batches of lines while the writer
        # stores (or spools) and acknowledges the batch before, in order. The writer mostly
        # waits on InfluxDB's answer with the GIL released, so decoding the next batch
        # meanwhile is nearly free throughput (BENCHMARKS.md). One batch waits between them.
        self._batches: queue.Queue[list[Pending] | None] = queue.Queue(maxsize=1)
        self._decoder = threading.Thread(target=self._decode, name="ingest-decoder",
                                         daemon=True)
        self._writer = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._replayer = threading.Thread(target=self._replay, name="ingest-replayer",
                                          daemon=True)

    def submit(self, message: InboundMessage) -> None:
        """Called from the MQTT network thread for each delivered message (``Intake``)."""
        self._intake.submit(message)

    def start(self) -> None:
        self._intake.start()
        self._decoder.start()
        self._writer.start()
        if self._spool is not None:
            SPOOL_BYTES.set(self._spool.bytes)
            self._replayer.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Store what was received and acknowledge it, then stop.

        If the store stays unavailable and nothing can be spooled for ``timeout_s``, the
        writer gives up: what it holds stays unacknowledged and the broker delivers it again.
        """
        self._stop.set()
        self._decoder.join(timeout_s)
        self._writer.join(timeout_s)
        if self._writer.is_alive() or self._decoder.is_alive():
            self._abandon.set()
            self._decoder.join(timeout_s)
            self._writer.join(timeout_s)
        self._abandon.set()
        if self._replayer.is_alive():
            self._replayer.join(timeout_s)
        self._intake.close()

    def status(self) -> dict[str, Any]:
        return {
            "queued_messages": self._intake.pending,
            "spool_bytes": self._spool.bytes if self._spool else None,
            "spool_segments": self._spool.segments if self._spool else None,
            "last_store_error": self.last_store_error,
        }

    @property
    def writer_alive(self) -> bool:
        """The threads that decode, batch and write are running."""
        return self._writer.is_alive() and self._decoder.is_alive()

    @property
    def decoder_alive(self) -> bool:
        """The decoding process (or thread) can decode now."""
        return self._intake.decoder_alive

    @property
    def pending(self) -> int:
        return self._intake.pending

    def _take_sequence(self, count: int) -> int:
        """Reserve ``count`` dead-letter sequence numbers for the writer or the replayer."""
        with self._sequence_lock:
            first = self._sequence
            self._sequence += count
            return WRITER_SEQUENCE_BASE + first % WRITER_SEQUENCE_BASE

    # The decoder thread.
    def _decode(self) -> None:
        try:
            while not (self._stop.is_set() and self._intake.empty()):
                batch = self._intake.collect()
                if batch and not self._hand_over(batch):
                    return
        finally:
            self._hand_over(None)

    def _hand_over(self, batch: list[Pending] | None) -> bool:
        """Give the writer a batch (``None``: no more); False if it gave up on shutdown."""
        while True:
            try:
                self._batches.put(batch, timeout=0.1)
                return True
            except queue.Full:
                if self._abandon.is_set() or not self._writer.is_alive():
                    return False

    # The writer thread.
    def _run(self) -> None:
        while True:
            try:
                batch = self._batches.get(timeout=0.1)
            except queue.Empty:
                if not self._decoder.is_alive() and self._batches.empty():
                    return
                continue
            if batch is None:
                return
            try:
                self._deliver(batch)
            except _Abandoned:
                log.warning("stopping with %d messages neither written nor spooled; the "
                            "broker delivers them again", len(batch))
                return

    def _deliver(self, batch: list[Pending]) -> None:
        lines = [text for p in batch for text in p.decoded.lines]
        extra = []
        late = self._late_range(batch)
        if late is not None:
            # Rollups of this range were already computed without these readings (a broker
            # backlog, a gateway's store-and-forward): ask for them again, atomically with
            # the readings themselves.
            extra.append(self._rollup_request(*late))
        lines += extra
        if lines:
            if self._spool is not None and not self._spool.empty():
                self._to_spool(batch, lines)  # keep the order: behind what waits already
            else:
                try:
                    self._write(batch, lines, extra)
                except StoreUnavailable as exc:
                    self.last_store_error = str(exc)
                    if self._spool is None:
                        raise _Abandoned from exc
                    log.warning("store unavailable (%s); spooling", exc)
                    self._to_spool(batch, lines)
        self._acknowledge(batch, len(lines))

    def _late_range(self, batch: list[Pending]) -> tuple[int, int] | None:
        """The range of the batch's late readings, widened to whole messages (a message
        with a late reading counts from its first reading up to the cutoff)."""
        cutoff = time.time_ns() // 1_000_000 - self._late_after_ms
        late = [p.decoded for p in batch if p.decoded.readings and p.decoded.first_ms < cutoff]
        if not late:
            return None
        return min(d.first_ms for d in late), max(min(d.last_ms, cutoff - 1) for d in late)

    def _rollup_request(self, start_ms: int, end_ms: int) -> str:
        """A request to recompute rollups over [start_ms, end_ms] (end inclusive)."""
        return line(ROLLUP_REQUESTS, {"source": self._source},
                    {"start_ms": start_ms, "end_ms": end_ms},
                    time.time_ns() + self._take_sequence(1) % 1000)

    def _write(self, batch: list[Pending], lines: list[str], extra: list[str]) -> None:
        """Write directly; without a spool, retry until the store is back or shutdown.

        ``extra`` are the lines of ``lines`` that belong to no message (rollup requests).
        """
        delay = 0.5
        while True:
            try:
                try:
                    self._store.write_lines(lines)
                except StoreRejected as exc:
                    log.error("store refused a batch of %d lines (%s); writing message by "
                              "message", len(lines), exc)
                    self._write_one_by_one(batch)
                    self._store.write_lines(extra)
                self.last_store_error = None
                return
            except StoreUnavailable as exc:
                if self._spool is not None or self._abandon.is_set():
                    raise
                self.last_store_error = str(exc)
                WRITE_RETRIES.inc()
                log.warning("store unavailable, retrying in %.1f s: %s", delay, exc)
                self._abandon.wait(delay)
                delay = min(delay * 2, 10.0)

    def _write_one_by_one(self, batch: list[Pending]) -> None:
        """Isolate the messages the store refuses; dead-letter them, keep the rest."""
        for pending in batch:
            try:
                self._store.write_lines(pending.decoded.lines)
            except StoreRejected as exc:
                letter = DeadLetter("store-rejected", cut(str(exc), DETAIL_CHARS))
                self._store.write_lines([dead_letter_line(
                    pending.topic, device_of(pending.topic), letter, pending.excerpt,
                    time.time_ns() // 1_000_000, self._take_sequence(1),
                    pending.payload_bytes)])
                pending.decoded.readings = 0
                pending.decoded.dead_letters[:] = [letter]

    def _to_spool(self, batch: list[Pending], lines: list[str]) -> None:
        assert self._spool is not None
        stored = [p.decoded for p in batch if p.decoded.readings]
        now_ms = time.time_ns() // 1_000_000
        start_ms, end_ms = ((min(d.first_ms for d in stored), max(d.last_ms for d in stored))
                            if stored else (now_ms, now_ms))
        full_since: float | None = None
        while True:
            try:
                self._spool.append(lines, start_ms, end_ms)
                break
            except SpoolFull as exc:
                if full_since is None:
                    full_since = time.monotonic()
                    log.error("%s: holding %d messages unacknowledged until the store "
                              "returns (the broker queues the rest)", exc, len(batch))
                    self._on_event("spool-full", {"spool_bytes": self._spool.bytes,
                                                  "max_bytes": self._spool.max_bytes})
                if self._abandon.wait(1.0):
                    raise _Abandoned from exc
        SPOOLED.inc(len(lines))
        SPOOL_BYTES.set(self._spool.bytes)
        if not self._spool_warned and self._spool.bytes >= SPOOL_WARN_SHARE * self._spool.max_bytes:
            self._spool_warned = True
            log.warning("spool at %d of %d bytes: InfluxDB has been unavailable long enough "
                        "that ingest will stop acknowledging soon", self._spool.bytes,
                        self._spool.max_bytes)
            self._on_event("spool-high", {"spool_bytes": self._spool.bytes,
                                          "max_bytes": self._spool.max_bytes})

    def _acknowledge(self, batch: list[Pending], line_count: int) -> None:
        now = time.monotonic()
        if line_count:
            BATCH_LINES.observe(line_count)
        newest = max((p.decoded.last_ms for p in batch if p.decoded.readings), default=None)
        if newest is not None:
            READING_AGE.observe(max(0.0, time.time() - newest / 1000))
        READINGS.inc(sum(pending.decoded.readings for pending in batch))
        for pending in batch:
            for reading, kind in pending.decoded.counter_events:
                COUNTER_EVENTS.labels(kind.value).inc()
                refusals.warning("register %s of %s/%s/%s: %s to %g %s at %d",
                                 reading.quantity, reading.estate, reading.facility,
                                 reading.device, kind.value, reading.value, reading.unit,
                                 reading.time_ms,
                                 extra=RateLimit(stream_id=f"register-{kind.value}"))
            for letter in pending.decoded.dead_letters:
                REJECTED.labels(letter.reason).inc(letter.count)
                DEAD_LETTERS_WRITTEN.labels(letter.reason).inc()
                refusals.info("dead letter %s on %s: %s (%d refused)", letter.reason,
                              cut(pending.topic, TOPIC_CHARS), letter.detail, letter.count,
                              extra=RateLimit(stream_id=letter.reason))
            self._ack(pending.mid, pending.qos)
            ACK_LATENCY.observe(now - pending.received)

    # The replayer thread.
    def _replay(self) -> None:
        assert self._spool is not None
        delay = 0.5
        while not self._abandon.is_set():
            segment = self._spool.oldest()
            if segment is None:
                if self._spool_warned:
                    self._spool_warned = False
                    self._on_event("spool-drained", {})
                self._abandon.wait(0.2)
                continue
            try:
                self._replay_segment(segment)
                delay = 0.5
            except StoreUnavailable as exc:
                self.last_store_error = str(exc)
                self._abandon.wait(delay)
                delay = min(delay * 2, 10.0)

    def _replay_segment(self, segment: Segment) -> None:
        assert self._spool is not None
        lines = segment.lines()
        try:
            self._store.write_lines(lines)
        except StoreRejected as exc:
            log.error("store refused spooled segment %s (%s); isolating its lines",
                      segment.path.name, exc)
            self._replay_line_by_line(lines)
        # Rollups of this range were computed without these readings: ask for them again.
        self._store.write_lines([self._rollup_request(segment.start_ms, segment.end_ms)])
        self._spool.remove(segment)
        REPLAYED.inc(len(lines))
        SPOOL_BYTES.set(self._spool.bytes)
        self.last_store_error = None
        log.info("replayed spool segment %s (%d lines, %d left)", segment.path.name,
                 len(lines), self._spool.segments)

    def _replay_line_by_line(self, lines: list[str]) -> None:
        for text in lines:
            try:
                self._store.write_lines([text])
            except StoreRejected as exc:
                # The line's own tags give the identity its topic gave.
                device = line_identity(text)
                letter = DeadLetter("store-rejected", cut(str(exc), DETAIL_CHARS))
                self._store.write_lines([dead_letter_line(
                    device.topic(Channel.TELEMETRY) if device else "(spool)", device, letter,
                    text.encode(), time.time_ns() // 1_000_000, self._take_sequence(1))])
