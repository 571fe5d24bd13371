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
from typing import Any

import orjson

from estate.errors import TopicError
from estate.ports import InboundMessage
from estate.senml import decode_pack
from estate.topics import Channel, parse_topic


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
        self._status: dict[tuple[str, str], str] = {}
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
            return dict(self._status)

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
            with self._lock:
                self._version += 1
                self._status[key] = state
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
        """Values changed after ``since_version`` (all of them for 0), and every status;
        of ``facility`` only if one is given."""
        with self._lock:
            values = [v.as_dict() for v in self._values.values()
                      if v.version > since_version
                      and (facility is None or v.facility == facility)]
            status = [{"facility": f, "device": d, "state": s}
                      for (f, d), s in self._status.items()
                      if facility is None or f == facility]
            return {"estate": self.estate, "version": self._version, "values": values,
                    "status": status}
