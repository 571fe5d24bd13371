"""Ingest's intake: messages as the network thread delivers them, decoded into batches.

``submit`` runs on paho's network thread and only enqueues (waiting while the messages not
yet decoded hold their byte bound: TCP then pushes back on the broker, which keeps the
rest queued). ``collect``, on the decoder thread, takes what arrived, has it decoded
(``ingest.decoding``: in a process of its own, or in this thread) and returns one batch:
full, or as old as the flush interval. A retained message is refused without decoding.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

from adapters.mqtt import InboundMessage
from ingest.decoding import Decoder, ProcessDecoder, ThreadDecoder
from ingest.metrics import MESSAGES, QUEUE_DEPTH
from ingest.pipeline import PAYLOAD_EXCERPT_BYTES, Decoded, Rules, refused

# Dead letters are points with the sequence number in their sub-millisecond digits. The
# decoder numbers its own below this, the writer and the replayer theirs from it up, so
# the two never need a common lock.
WRITER_SEQUENCE_BASE = 500_000
# At most this many messages go to the decoder at once (a backlog after a restart would
# otherwise make one batch of them all).
MAX_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Pending:
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
    def of(cls, message: InboundMessage, received: float, decoded: Decoded) -> Pending:
        return cls(message.topic, message.mid, message.qos, received,
                   message.payload[:PAYLOAD_EXCERPT_BYTES], len(message.payload), decoded)


class Intake:
    """The received messages, bounded in bytes, and their decoding into batches."""

    def __init__(self, rules: Rules, *, batch_size: int, flush_interval_s: float,
                 decode_in_process: bool, max_queued_bytes: int, stop: threading.Event,
                 abandon: threading.Event) -> None:
        self._rules = rules
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._decode_in_process = decode_in_process
        self._stop = stop
        self._abandon = abandon
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
        self._decode_sequence = 0  # the decoder's dead letters
        self._decoder_impl: Decoder | None = None
        # Lines per message, learnt as messages come: how many to decode at once so that a
        # batch ends close to its size.
        self._lines_per_message = 1.0

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

    def close(self) -> None:
        if self._decoder_impl is not None:
            self._decoder_impl.close()

    @property
    def decoder_alive(self) -> bool:
        """The decoding process (or thread) can decode now."""
        return self._decoder_impl is not None and self._decoder_impl.alive

    @property
    def pending(self) -> int:
        """Messages received and not yet taken into a batch."""
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    def collect(self) -> list[Pending]:
        """Decode what arrives into one batch: full, or as old as the flush interval."""
        assert self._decoder_impl is not None
        batch: list[Pending] = []
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
                batch.append(Pending.of(message, received, result))
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
