"""Live state of the estate for the web view, fed straight from MQTT.

The web view subscribes to telemetry and status (an ordinary, non-shared subscription: every
web replica sees everything) and keeps the latest value of each meter quantity. The same
codec as ingest decodes the packs, so what the page shows live is what gets stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from estate.bounded import cut
from estate.errors import TopicError
from estate.ports import InboundMessage
from estate.senml import decode_pack
from estate.topics import Channel, parse_topic

# A device's status is a word (online, offline); what a device sends is cut to this.
STATE_CHARS: Final = 32


@dataclass(slots=True)
class LiveValue:
    facility: str
    device: str
    quantity: str
    channel: str
    value: float
    unit: str
    time_ms: int
    version: int

    def as_dict(self) -> dict[str, Any]:
        return {"facility": self.facility, "device": self.device, "quantity": self.quantity,
                "channel": self.channel, "value": self.value, "unit": self.unit,
                "time_ms": self.time_ms}


class LiveState:
    """Latest value per (facility, device, quantity, channel) and status per device."""

    def __init__(self, estate: str) -> None:
        self.estate = estate
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, str, str], LiveValue] = {}
        # Per device, its state and the version at which it last changed.
        self._status: dict[tuple[str, str], tuple[str, int]] = {}
        self._version = 0
        self._received_s: float | None = None

    @property
    def version(self) -> int:
        return self._version

    def feed_age_s(self, now_s: float | None = None) -> float | None:
        """Seconds since the feed last brought a message of this estate (None: never)."""
        received = self._received_s
        if received is None:
            return None
        return max(0.0, (time.time() if now_s is None else now_s) - received)

    def latest(self, keys: Iterable[tuple[str, str, str, str]],
               ) -> dict[tuple[str, str, str, str], LiveValue]:
        """The latest value of each (facility, device, quantity, channel) of ``keys`` that
        has one."""
        with self._lock:
            return {k: v for k in keys if (v := self._values.get(k)) is not None}

    def statuses(self) -> dict[tuple[str, str], str]:
        """Each (facility, device)'s last reported status (``online``, ``offline``...)."""
        with self._lock:
            return {k: state for k, (state, _) in self._status.items()}

    def handle(self, message: InboundMessage) -> None:
        """The live subscriptions' handler (on the connection's worker thread)."""
        try:
            parsed = parse_topic(message.topic)
        except TopicError:
            return  # ingest dead-letters bad topics; the live view just ignores them
        if parsed.device.estate != self.estate:
            return
        self._received_s = time.time()
        key = (parsed.device.facility, parsed.device.device)
        if parsed.channel is Channel.STATUS:
            try:
                state = str(orjson.loads(message.payload).get("state", "unknown"))
            except (orjson.JSONDecodeError, AttributeError):
                state = "unknown"
            state = cut(state, STATE_CHARS)
            with self._lock:
                if self._status.get(key, ("", 0))[0] != state:
                    self._version += 1
                    self._status[key] = (state, self._version)
            return
        if parsed.channel is not Channel.TELEMETRY:
            return
        decoded = decode_pack(message.payload, parsed.device, time.time_ns() // 1_000_000)
        with self._lock:
            for r in decoded.readings:
                vkey = (r.facility, r.device, r.quantity, r.channel)
                current = self._values.get(vkey)
                if current is not None and current.time_ms > r.time_ms:
                    continue  # a late, re-delivered reading must not replace a newer one
                self._version += 1
                self._values[vkey] = LiveValue(r.facility, r.device, r.quantity, r.channel,
                                               r.value, r.unit, r.time_ms, self._version)

    def snapshot(self, since_version: int = 0, facility: str | None = None
                 ) -> dict[str, Any]:
        """Values and statuses changed after ``since_version`` (all of them for 0); of
        ``facility`` only if one is given."""
        return self.changes(since_version).of(facility)

    def changes(self, since_version: int = 0) -> Changes:
        """What changed after ``since_version`` (everything for 0), in one pass under the
        lock, for any number of readers to share."""
        with self._lock:
            values = [v for v in self._values.values() if v.version > since_version]
            status = [(f, d, state) for (f, d), (state, version) in self._status.items()
                      if version > since_version]
            return Changes(self.estate, self._version, values, status)


@dataclass(frozen=True, slots=True)
class Changes:
    """Values and statuses changed since a version, up to ``version``."""

    estate: str
    version: int
    values: list[LiveValue]
    status: list[tuple[str, str, str]]

    def of(self, facility: str | None) -> dict[str, Any]:
        """The live feed's document of these changes, of ``facility`` only if given."""
        return {"estate": self.estate, "version": self.version,
                "values": [v.as_dict() for v in self.values
                           if facility is None or v.facility == facility],
                "status": [{"facility": f, "device": d, "state": s}
                           for f, d, s in self.status if facility is None or f == facility]}
