"""A thread that runs message handlers off a network thread: one message at a time, in
arrival order, with a bounded backlog. ``adapters.mqtt`` gives one to each connection."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Final

from estate.ports import InboundMessage, MessageHandler

log = logging.getLogger(__name__)

# A handler's backlog on the worker, at most: enough for a burst of every meter of a large
# estate (the web view's live feed), small enough to stay a fraction of the service's
# memory. Beyond either bound a message is dropped with a warning (a manually acknowledged
# one stays unacknowledged, so the broker delivers it again after a reconnection).
MAX_BACKLOG_MESSAGES: Final = 10_000
MAX_BACKLOG_BYTES: Final = 64 << 20
# A topic in a log line is cut to this: topics hold device identifiers.
TOPIC_IN_TEXT: Final = 200
# Dropped messages are logged at most this often, with the count since.
_DROP_LOG_INTERVAL_S: Final = 60.0


def shown_topic(topic: str) -> str:
    """``topic`` as a log line or an error may show it."""
    return topic if len(topic) <= TOPIC_IN_TEXT else topic[:TOPIC_IN_TEXT] + "..."


def call_handler(handler: MessageHandler, message: InboundMessage) -> None:
    """Call ``handler``; what it raises is logged, so later messages still reach it (paho
    would re-raise it out of its network loop, ending the connection for good)."""
    try:
        handler(message)
    except Exception:
        log.exception("handler failed on a message on %s", shown_topic(message.topic))


class HandlerWorker:
    """Runs handlers off the network thread, one message at a time in arrival order.

    ``put`` never waits: a message beyond the backlog's bounds is dropped and counted.
    """

    def __init__(self, name: str, max_messages: int, max_bytes: int) -> None:
        self._items: deque[tuple[MessageHandler, InboundMessage]] = deque()
        self._bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._ready = threading.Condition()
        self._stopping = False
        self.dropped = 0
        self._dropped_logged_at = 0.0
        self._dropped_since_log = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, handler: MessageHandler, message: InboundMessage) -> bool:
        size = len(message.payload)
        with self._ready:
            if (len(self._items) >= self._max_messages
                    or (self._items and self._bytes + size > self._max_bytes)):
                self._note_drop(message)
                return False
            self._items.append((handler, message))
            self._bytes += size
            self._ready.notify()
        return True

    def _note_drop(self, message: InboundMessage) -> None:
        self.dropped += 1
        self._dropped_since_log += 1
        now = time.monotonic()
        if now - self._dropped_logged_at >= _DROP_LOG_INTERVAL_S:
            log.warning("handlers are behind (%d messages, %d bytes waiting): %d messages "
                        "dropped, the latest on %s", len(self._items), self._bytes,
                        self._dropped_since_log, shown_topic(message.topic))
            self._dropped_logged_at, self._dropped_since_log = now, 0

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._items and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return
                handler, message = self._items.popleft()
                self._bytes -= len(message.payload)
            call_handler(handler, message)

    def stop(self, timeout_s: float) -> None:
        """Stop after the message in hand; what waits behind it is dropped."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
