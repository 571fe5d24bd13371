"""The live feed for many pages: each tick's changes are read once and encoded once per
scope, then handed to every open stream.

::

    LiveState ──(every PERIOD_S, if its version moved)──► changes since the last tick
        └─► encoded once for the whole estate, once per facility some stream is bound to
              └─► each stream's queue (at most QUEUE_DEPTH items)
                    └─► the stream's response (server-sent events)

A stream whose queue is full (a browser that stopped reading: a laptop asleep, a tab
frozen) is dropped: its queue is emptied and left holding one ``dropped`` notice, it gets
nothing more, and the page's EventSource reconnects when it reads again (and starts from a
full snapshot). Whatever the number of streams and however slow any of them, the memory
they hold is bounded by the streams times ``QUEUE_DEPTH`` items.

Everything here runs on the event loop's thread; ``LiveState`` is fed from the MQTT
connection's worker thread and has its own lock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final

import orjson

from dispatch.web.live import LiveState

log = logging.getLogger(__name__)

# Four times a second: a reading reaches an open page within a quarter of a second plus
# its way there (the target is a second at the 95th percentile), while a busy estate's
# changes are still batched: 200 pages cost 800 small events a second, not one per reading.
PERIOD_S: Final = 0.25
# Two seconds of changes: a page that is this far behind is not reading, and a full
# snapshot on reconnection is cheaper than an unbounded backlog.
QUEUE_DEPTH: Final = 8
DROPPED: Final = orjson.dumps({"reason": "this page fell behind the live feed; "
                                         "reconnect for a fresh snapshot"}).decode()


@dataclass(eq=False)
class Subscriber:
    """One open stream: the facility it is bound to (None: the estate) and its queue of
    encoded events, ``(event, data)``."""

    scope: str | None
    queue: asyncio.Queue[tuple[str, str]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))
    dropped: bool = False


@dataclass
class FanoutCounts:
    """What the feed has done since the view started (for ``/api/health``)."""

    ticks: int = 0
    encoded: int = 0  # documents encoded: one per scope per tick, whatever the streams
    sent: int = 0  # events queued to streams
    dropped: int = 0  # streams dropped for falling behind


class LiveFanout:
    """The ticker and the open streams of one web view."""

    def __init__(self, live: LiveState, period_s: float = PERIOD_S,
                 queue_depth: int = QUEUE_DEPTH) -> None:
        self.live = live
        self.counts = FanoutCounts()
        self._period_s = period_s
        self._depth = queue_depth
        self._subscribers: set[Subscriber] = set()
        self._version = live.version
        self._task: asyncio.Task[None] | None = None
        # The full snapshot of each scope at ``_full_version``: pages opened together
        # share it instead of each reading the whole state.
        self._full: dict[str | None, str] = {}
        self._full_version = -1

    @property
    def streams(self) -> int:
        return len(self._subscribers)

    def subscribe(self, scope: str | None) -> Subscriber:
        """A new stream of ``scope``, its first event the full snapshot. Starts the ticker
        if it is not running (call on the event loop)."""
        subscriber = Subscriber(scope, asyncio.Queue(self._depth))
        subscriber.queue.put_nowait(("live", self._snapshot(scope)))
        self._subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self._version = self.live.version
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="live-fanout")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def _snapshot(self, scope: str | None) -> str:
        version = self.live.version
        if version != self._full_version:
            self._full = {}
            self._full_version = version
        encoded = self._full.get(scope)
        if encoded is None:
            encoded = orjson.dumps(self.live.changes(0).of(scope)).decode()
            self._full[scope] = encoded
            self.counts.encoded += 1
        return encoded

    async def _run(self) -> None:
        while self._subscribers:
            await asyncio.sleep(self._period_s)
            try:
                self.tick()
            except Exception:
                log.exception("live feed tick failed; trying again")

    def tick(self) -> None:
        """Hand what changed since the last tick to every stream, encoded once per scope."""
        self.counts.ticks += 1
        if self.live.version == self._version or not self._subscribers:
            return
        changes = self.live.changes(self._version)
        self._version = changes.version
        encoded: dict[str | None, str | None] = {}
        for subscriber in list(self._subscribers):
            scope = subscriber.scope
            if scope not in encoded:
                document = changes.of(scope)
                encoded[scope] = (orjson.dumps(document).decode()
                                  if document["values"] or document["status"] else None)
                self.counts.encoded += encoded[scope] is not None
            data = encoded[scope]
            if data is not None:
                self._offer(subscriber, data)

    def _offer(self, subscriber: Subscriber, data: str) -> None:
        try:
            subscriber.queue.put_nowait(("live", data))
            self.counts.sent += 1
        except asyncio.QueueFull:
            self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(("dropped", DROPPED))
        subscriber.dropped = True
        self._subscribers.discard(subscriber)
        self.counts.dropped += 1
        log.info("a live stream of %s fell %d events behind: dropped",
                 subscriber.scope or "the estate", self._depth)

    def report(self) -> dict[str, int]:
        return {"streams": self.streams, "dropped": self.counts.dropped,
                "ticks": self.counts.ticks, "encoded": self.counts.encoded,
                "sent": self.counts.sent}

