"""How a publication over MQTT is getting on: ``estate.ports.Delivery`` over paho's
message info, and the broker's refusals kept beside it (docs/commands.md, section 10).

paho marks a QoS 1 publication published when its PUBACK comes, whatever the PUBACK's
reason code: a broker that refuses it (Mosquitto, for an account its ACL does not let
publish on the topic, answers *Not authorized*) would look like one that took it. The
connection (``adapters.mqtt``) hears the reason code first and records the refusal here,
before paho marks the publication published, so whoever waits for it sees the refusal.

No paho import: the info is anything with paho's ``is_published`` and
``wait_for_publish``, so paho stays in ``adapters.mqtt`` alone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final, Protocol

# The MQTT 5 reason codes a broker gives for a publication it will not take, in a PUBACK
# or in the DISCONNECT it closes the connection with: not authorized, topic name invalid,
# packet too large, quota exceeded, payload format invalid, retain not supported, QoS not
# supported.
PUBLICATION_REFUSALS: Final = frozenset({0x87, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B})
# Refusals kept for the deliveries that ask: a misconfigured account refuses every
# command, a few a minute; the oldest are forgotten beyond this, so memory stays bounded.
MAX_REFUSALS: Final = 1024


class MessageInfo(Protocol):
    """What paho's ``MQTTMessageInfo`` offers that a delivery needs."""

    def is_published(self) -> bool: ...

    def wait_for_publish(self, timeout: float | None = None) -> None: ...


class Refusals:
    """The reasons the broker gave for the publications it refused, by publication."""

    def __init__(self, limit: int = MAX_REFUSALS) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        # Keyed by the info's identity, which is kept in the value so that it is not
        # reused for another publication while the entry lives.
        self._by_info: OrderedDict[int, tuple[MessageInfo, str]] = OrderedDict()
        self.count = 0

    def add(self, info: MessageInfo, reason: str) -> None:
        with self._lock:
            self._by_info[id(info)] = (info, reason)
            self.count += 1
            while len(self._by_info) > self._limit:
                self._by_info.popitem(last=False)

    def of(self, info: MessageInfo) -> str | None:
        with self._lock:
            entry = self._by_info.get(id(info))
        return entry[1] if entry is not None and entry[0] is info else None


class MqttDelivery:
    """``estate.ports.Delivery`` over paho's message info; paho's exceptions stay here."""

    __slots__ = ("_info", "_refusals")

    def __init__(self, info: MessageInfo, refusals: Refusals) -> None:
        self._info = info
        self._refusals = refusals

    @property
    def refused(self) -> str | None:
        return self._refusals.of(self._info)

    @property
    def delivered(self) -> bool:
        try:
            published = self._info.is_published()
        except (RuntimeError, ValueError):
            return False
        return published and self.refused is None

    def wait(self, timeout_s: float) -> bool:
        if self.refused is None:
            try:
                self._info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                return False
        return self.delivered
