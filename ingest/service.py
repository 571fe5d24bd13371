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
decoder (``ingest.decoding``: a process of its own, or this thread) and builds batches;
the writer thread writes and acknowledges; the replayer thread drains the spool. The queue
cannot grow without bound: the broker never has more than Receive Maximum un-acknowledged
messages in flight to us.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from log_rate_limit import RateLimit, StreamRateLimitFilter
from prometheus_client import Counter, Gauge, Histogram

from adapters.mqtt import InboundMessage
from estate.bounded import TOPIC_CHARS, cut
from estate.errors import StoreRejected, StoreUnavailable, TopicError
from estate.lineprotocol import line
from estate.ports import TimeSeriesStore
from estate.schema import ROLLUP_REQUESTS
from estate.topics import Channel, DeviceId
from ingest.decoding import Decoder, ProcessDecoder, ThreadDecoder
from ingest.pipeline import (
    DEFAULT_RULES,
    DETAIL_CHARS,
    PAYLOAD_EXCERPT_BYTES,
    DeadLetter,
    Decoded,
    Rules,
    dead_letter_line,
    device_of,
    refused,
)
from ingest.spool import Segment, Spool, SpoolFull

log = logging.getLogger(__name__)

# Refusals and register events can come by the thousand from one device: each is counted
# in /metrics, and logged at most once per reason (or kind) per period, the next line
# saying how many were held back meanwhile.
REFUSAL_LOG_PERIOD_S = 10.0
refusals = logging.getLogger("ingest.refusals")
refusals.addFilter(StreamRateLimitFilter(
    period_sec=REFUSAL_LOG_PERIOD_S, default_stream_id=None, filter_undefined=False,
    summary_msg="(and {numskip} more like it in the last {period_sec:g} s)"))

MESSAGES = Counter("ingest_messages_total", "MQTT messages received")
READINGS = Counter("ingest_readings_written_total", "Readings stored (written or spooled)")
REJECTED = Counter("ingest_rejected_total", "Messages or records refused", ["reason"])
DEAD_LETTERS_WRITTEN = Counter("ingest_dead_letters_total",
                               "Dead letters written (one per reason per message)", ["reason"])
COUNTER_EVENTS = Counter("ingest_counter_events_total", "Register rollovers and resets",
                         ["kind"])
WRITE_RETRIES = Counter("ingest_write_retries_total", "Batch writes retried")
SPOOLED = Counter("ingest_spooled_lines_total", "Lines written to the local spool")
REPLAYED = Counter("ingest_replayed_lines_total", "Spooled lines replayed into the store")
SPOOL_BYTES = Gauge("ingest_spool_bytes", "Bytes waiting in the local spool")
QUEUE_DEPTH = Gauge("ingest_queue_messages", "Messages received and not yet processed")
BATCH_LINES = Histogram("ingest_batch_lines", "Lines per stored batch",
                        buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000))
ACK_LATENCY = Histogram("ingest_ack_latency_seconds", "From receipt to acknowledgement",
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
READING_AGE = Histogram("ingest_reading_age_seconds",
                        "Age of a batch's newest reading when stored (end-to-end lag)",
                        buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 60, 300, 3600))

AckFunction = Callable[[int, int], None]
EventHandler = Callable[[str, dict[str, Any]], None]
"""Receives operational events (``spool-high``, ``spool-full``, ``spool-drained``)."""

# Warn (log, metric, event) when the spool passes this share of its bound: an operator
# then has time to bring InfluxDB back before ingest has to stop acknowledging.
SPOOL_WARN_SHARE = 0.8


# Dead letters are points with the sequence number in their sub-millisecond digits. The
# decoder numbers its own below this, the writer and the replayer theirs from it up, so
# the two never need a common lock.
WRITER_SEQUENCE_BASE = 500_000
# At most this many messages go to the decoder at once (a backlog after a restart would
# otherwise make one batch of them all).
MAX_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class _Pending:
    """A decoded message until it is acknowledged: of its payload only the start, for the
    dead letter of a message the store refuses, so what waits is bounded by the number of
    messages, not by what they held."""

    topic: str
    mid: int
    qos: int
    received: float
    excerpt: bytes
    payload_bytes: int
    decoded: Decoded

    @classmethod
    def of(cls, message: InboundMessage, received: float, decoded: Decoded) -> _Pending:
        return cls(message.topic, message.mid, message.qos, received,
                   message.payload[:PAYLOAD_EXCERPT_BYTES], len(message.payload), decoded)


class _Abandoned(Exception):
    """Shutdown came while the batch could be neither written nor spooled."""


class Ingestor:
    """Owns the queue, the writer and the replayer; the composition root owns the rest."""

    def __init__(self, store: TimeSeriesStore, ack: AckFunction, *, batch_size: int,
                 flush_interval_s: float, rules: Rules = DEFAULT_RULES,
                 spool: Spool | None = None, on_event: EventHandler | None = None,
                 source: str = "ingest", late_after_s: float = 600.0,
                 decode_in_process: bool = False,
                 max_queued_bytes: int = 16 << 20) -> None:
        self._store = store
        self._ack = ack
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._rules = rules
        self._spool = spool
        self._on_event = on_event or (lambda kind, data: None)
        self._source = source
        self._late_after_ms = round(late_after_s * 1000)
        # SimpleQueue: the network thread puts every message here, and the C queue costs a
        # fraction of queue.Queue's locks and condition per message.
        self._queue: queue.SimpleQueue[tuple[float, InboundMessage]] = queue.SimpleQueue()
        # Payload bytes received and not yet taken by the decoder, and their bound: when
        # the broker has a backlog it sends up to Receive Maximum messages ahead, which
        # at the payload limit would be gigabytes. At the bound the network thread waits
        # (TCP pushes back on the broker, which keeps the rest queued).
        self._queued_bytes = 0
        self._max_queued_bytes = max_queued_bytes
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._sequence = 0  # the writer's and the replayer's dead letters
        self._sequence_lock = threading.Lock()
        self._decode_sequence = 0  # the decoder's
        self._decode_in_process = decode_in_process
        self._decoder_impl: Decoder | None = None
        # Lines per message, learnt as messages come: how many to decode at once so that a
        # batch ends close to its size.
        self._lines_per_message = 1.0
        self._spool_warned = False
        self.last_store_error: str | None = None
        # Two stages: the decoder turns messages into batches of lines while the writer
        # stores (or spools) and acknowledges the batch before, in order. The writer mostly
        # waits on InfluxDB's answer with the GIL released, so decoding the next batch
        # meanwhile is nearly free throughput (BENCHMARKS.md). One batch waits between them.
        self._batches: queue.Queue[list[_Pending] | None] = queue.Queue(maxsize=1)
        self._decoder = threading.Thread(target=self._decode, name="ingest-decoder",
                                         daemon=True)
        self._writer = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._replayer = threading.Thread(target=self._replay, name="ingest-replayer",
                                          daemon=True)

    def submit(self, message: InboundMessage) -> None:
        """Called from the MQTT network thread for each delivered message; waits while
        the messages not yet decoded hold ``max_queued_bytes``."""
        size = len(message.payload)
        with self._room:
            while (self._queued_bytes and self._queued_bytes + size > self._max_queued_bytes
                   and not self._abandon.is_set()):
                self._room.wait(0.1)
            self._queued_bytes += size
        self._queue.put((time.monotonic(), message))

    def start(self) -> None:
        self._decoder_impl = (ProcessDecoder(self._rules) if self._decode_in_process
                              else ThreadDecoder(self._rules))
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
        if self._decoder_impl is not None:
            self._decoder_impl.close()

    def status(self) -> dict[str, Any]:
        return {
            "queued_messages": self._queue.qsize(),
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
        return self._decoder_impl is not None and self._decoder_impl.alive

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _take_sequence(self, count: int) -> int:
        """Reserve ``count`` dead-letter sequence numbers for the writer or the replayer."""
        with self._sequence_lock:
            first = self._sequence
            self._sequence += count
            return WRITER_SEQUENCE_BASE + first % WRITER_SEQUENCE_BASE

    # The decoder thread.
    def _decode(self) -> None:
        try:
            while not (self._stop.is_set() and self._queue.empty()):
                batch = self._collect()
                if batch and not self._hand_over(batch):
                    return
        finally:
            self._hand_over(None)

    def _hand_over(self, batch: list[_Pending] | None) -> bool:
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

    def _collect(self) -> list[_Pending]:
        """Decode what arrives into one batch: full, or as old as the flush interval."""
        assert self._decoder_impl is not None
        batch: list[_Pending] = []
        lines = 0
        deadline: float | None = None
        while lines < self._batch_size:
            timeout = 0.1 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                chunk = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                if deadline is None and self._stop.is_set():
                    break
                continue
            if deadline is None:
                deadline = time.monotonic() + self._flush_interval_s
            # Everything that arrived meanwhile, as far as the batch has room.
            room = max(1, min(MAX_CHUNK, int((self._batch_size - lines)
                                             / self._lines_per_message)))
            while len(chunk) < room:
                try:
                    chunk.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._room:
                self._queued_bytes -= sum(len(m.payload) for _, m in chunk)
                self._room.notify()
            decoded = self._decode_chunk([m for _, m in chunk])
            chunk_lines = 0
            for (received, message), result in zip(chunk, decoded, strict=True):
                batch.append(_Pending.of(message, received, result))
                chunk_lines += len(result.lines)
            lines += chunk_lines
            self._lines_per_message = max(0.1, chunk_lines / len(chunk))
        MESSAGES.inc(len(batch))
        QUEUE_DEPTH.set(self._queue.qsize())
        return batch

    def _decode_chunk(self, messages: list[InboundMessage]) -> list[Decoded]:
        """Decode ``messages`` in order. A retained message is refused without decoding:
        the broker sends it again at every subscription, and a pack with relative times
        would be stored again each time, at another time."""
        assert self._decoder_impl is not None
        now_ms = time.time_ns() // 1_000_000
        live = [(m.topic, m.payload) for m in messages if not m.retain]
        decoded = self._decoder_impl(live, now_ms, self._decode_sequence % WRITER_SEQUENCE_BASE)
        # The decoder numbered its dead letters from the sequence on; the refused follow.
        self._decode_sequence += sum(len(d.dead_letters) for d in decoded)
        if len(live) == len(messages):
            return decoded
        answers = iter(decoded)
        results = []
        for message in messages:
            if message.retain:
                results.append(refused(
                    message.topic, message.payload, "retained-telemetry",
                    "the broker kept this message (it was published retained) and sends it "
                    "again at every subscription; telemetry is published with retain off",
                    now_ms, self._decode_sequence % WRITER_SEQUENCE_BASE))
                self._decode_sequence += 1
            else:
                results.append(next(answers))
        return results

    def _deliver(self, batch: list[_Pending]) -> None:
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

    def _late_range(self, batch: list[_Pending]) -> tuple[int, int] | None:
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

    def _write(self, batch: list[_Pending], lines: list[str], extra: list[str]) -> None:
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

    def _write_one_by_one(self, batch: list[_Pending]) -> None:
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

    def _to_spool(self, batch: list[_Pending], lines: list[str]) -> None:
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

    def _acknowledge(self, batch: list[_Pending], line_count: int) -> None:
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
                device = _line_identity(text)
                letter = DeadLetter("store-rejected", cut(str(exc), DETAIL_CHARS))
                self._store.write_lines([dead_letter_line(
                    device.topic(Channel.TELEMETRY) if device else "(spool)", device, letter,
                    text.encode(), time.time_ns() // 1_000_000, self._take_sequence(1))])


def _line_identity(text: str) -> DeviceId | None:
    """The estate, facility and device tags of a line ingest wrote (their values are
    identifiers, which line protocol does not escape), if it has all three."""
    head = text.split(" ", 1)[0]
    tags = dict(pair.partition("=")[::2] for pair in head.split(",")[1:])
    try:
        return DeviceId(tags["estate"], tags["facility"], tags["device"])
    except (KeyError, TopicError):
        return None
