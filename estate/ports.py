"""Ports: what the services need from the outside world, as protocols.

Each port has one adapter per backend in the ``adapters`` package, handed to the services
by their composition roots; the services never import a backend library themselves.

A port speaks the domain's words, never a backend's query language or types: the
time-series store is asked for the points of a series over a time range, the newest values
per meter, aggregates over windows, counts and retention, so InfluxQL is written in
``adapters`` only and a store with another language (InfluxDB 3's SQL) is one new adapter
(docs/influxdb.md). Messaging publishes, subscribes and carries requests and responses,
with its own delivery handle; paho's types, errors and network thread stay behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """A measurement and the retention policy it lives in (None: the database's default,
    where the raw readings are)."""

    measurement: str
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start_ms, end_ms)`` in epoch milliseconds; ``end_ms`` None: up to the newest."""

    start_ms: int
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if self.end_ms is not None and self.end_ms < self.start_ms:
            raise ValueError(f"a time range cannot end ({self.end_ms}) before it starts "
                             f"({self.start_ms})")


@dataclass(frozen=True, slots=True)
class Where:
    """Which series of a measurement: each tag of ``tags`` equal to its value and, when
    ``any_of`` is given, all the tags of one of its entries (a set of meters, say). An
    empty ``any_of`` matches nothing."""

    tags: Mapping[str, str] = field(default_factory=dict)
    any_of: Sequence[Mapping[str, str]] | None = None


EVERYWHERE = Where()


class Aggregate(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    MEAN = "mean"


@dataclass(frozen=True, slots=True)
class Aggregation:
    """``function`` of ``field`` over a window, answered as ``name``."""

    name: str
    function: Aggregate
    field: str


@dataclass(frozen=True, slots=True)
class Point:
    """A point read back: its time (a window's start, for aggregates), the tags it was
    grouped by, and its fields (None where it has no value for one asked for)."""

    time_ms: int
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue | None]


@dataclass(frozen=True, slots=True)
class LatestValues:
    """The newest value of each field of a group, each on its own: they may come from
    different points. Fields without any value in the range are absent."""

    tags: Mapping[str, str]
    values: Mapping[str, FieldValue]


class TimeSeriesStore(Protocol):
    """Points in (line protocol), points out: served by InfluxDB 1.x, 2.x and 3.x.

    Reads are grouped: ``group_by`` names the tags whose every combination is a group of
    its own (each answer carries them), and points come oldest first within a group.
    Errors are those of ``estate.errors``: ``StoreUnavailable`` when a retry may succeed,
    ``StoreRejected`` when the request itself is refused.
    """

    def ensure_database(self) -> None:
        """Create the database and its default retention policy if they do not exist."""

    def ensure_retention(self, policy: str, duration: str, *, default: bool = False) -> None:
        """Create retention policy ``policy`` keeping points for ``duration`` (``90d``,
        ``INF``), or bring an existing one's duration in line with it. Raises
        ``StoreRejected`` where retention belongs to the administrator (2.x buckets,
        3.x databases)."""

    def write_lines(self, lines: Sequence[str], retention_policy: str | None = None) -> None:
        """Write lines of line protocol with nanosecond timestamps, all or nothing.

        ``retention_policy`` names where they go when it is not the database's default.

        Raises ``StoreUnavailable`` when a retry may succeed and ``StoreRejected`` when
        the lines themselves are refused.
        """

    def field_names(self, series: SeriesRef) -> list[str]:
        """Every field name ever written to ``series``."""

    def points(self, series: SeriesRef, span: TimeRange | None, *,
               fields: Sequence[str] | None = None, where: Where = EVERYWHERE,
               group_by: Sequence[str] = (), limit_per_group: int | None = None,
               ) -> list[Point]:
        """The points of ``series`` in ``span`` (None: all), with ``fields`` (None: every
        field), at most ``limit_per_group`` of each group, the oldest."""

    def newest_points(self, series: SeriesRef, span: TimeRange | None, *,
                      fields: Sequence[str] | None = None, where: Where = EVERYWHERE,
                      group_by: Sequence[str] = ()) -> list[Point]:
        """The newest point of each group in ``span``, whatever field it holds."""

    def latest_values(self, series: SeriesRef, fields: Sequence[str], span: TimeRange | None,
                      *, where: Where = EVERYWHERE, group_by: Sequence[str] = (),
                      ) -> list[LatestValues]:
        """Per group, the newest value of each of ``fields`` in ``span``."""

    def window_aggregates(self, series: SeriesRef, aggregations: Sequence[Aggregation],
                          span: TimeRange, window_ms: int, *, where: Where = EVERYWHERE,
                          group_by: Sequence[str] = ()) -> list[Point]:
        """Per group and window of ``window_ms`` (windows aligned to the epoch), the
        aggregations over the points of ``span`` (which must end); windows without a
        point are left out. A point's time is its window's start."""

    def count(self, series: SeriesRef, span: TimeRange | None = None, *,
              where: Where = EVERYWHERE) -> int:
        """How many field values ``series`` holds in ``span`` (every field of every point)."""

    def ping(self) -> str:
        """Return the server's version; raise ``StoreUnavailable`` if it does not answer."""

    def close(self) -> None:
        """Release connections."""


# --- messaging ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message as the broker delivered it; ``mid`` and ``qos`` are what ``ack`` needs.
    A request carries the topic its answer goes to and the data that correlates them."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    response_topic: str | None = None
    correlation_data: bytes | None = None


MessageHandler = Callable[[InboundMessage], None]


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will the broker publishes if this client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Session:
    """How the broker should treat this client's session.

    A persistent session (``clean_start=False`` with an expiry) keeps subscriptions and
    un-acknowledged QoS 1 messages across disconnections and broker restarts.
    """

    clean_start: bool = True
    expiry_s: int = 0
    # How many un-acknowledged QoS 1 messages the broker may have in flight to us. An
    # ingest worker that acks after a batch is written needs at least a batch of them.
    receive_maximum: int = 65535
    manual_ack: bool = False


class Handling(StrEnum):
    """Where a subscription's handler runs."""

    WORKER = "worker"
    """On the connection's own worker thread, one message at a time in arrival order: a
    slow handler (a database write, a device command) delays its own messages, never the
    connection. The default."""
    INLINE = "inline"
    """On the network thread itself, for a handler that only puts the message in a queue
    of its own (ingest's raw enqueue, at hundreds of thousands of readings a second): it
    must not do I/O or wait on anything that does."""


class Delivery(Protocol):
    """How a publication is getting on: our own handle, whatever library carries it."""

    @property
    def delivered(self) -> bool:
        """The broker has it: acknowledged (QoS 1), or written to the connection (QoS 0).
        A publication made while disconnected is delivered after the reconnection."""

    @property
    def refused(self) -> str | None:
        """Why the broker would not take it, in words (a PUBACK's failure reason code, or a
        DISCONNECT the broker sent with such a reason while it was in flight); None while
        it has not refused it. A refused publication is never ``delivered``."""

    def wait(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for ``delivered`` (or a refusal); never raises."""


class Messaging(Protocol):
    """Publish, subscribe, request and respond over a broker (MQTT 5).

    Subscriptions are kept: they are made again after every reconnection. Errors are
    ``estate.errors.BrokerError``.
    """

    @property
    def connected(self) -> bool:
        """The broker accepted the connection and it has not dropped since."""

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait until the broker accepted us; ``BrokerError`` otherwise."""

    def connect_async(self) -> None:
        """Start connecting in the background; retries until the broker is there."""

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the connection; True once connected."""

    @property
    def subscribed(self) -> bool:
        """Connected, and every subscription acknowledged by the broker (SUBACK)."""

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` until the broker acknowledged every subscription on
        the current connection; True once it has (readiness: from then on nothing published
        to them is missed)."""

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1, *,
                  handling: Handling = Handling.WORKER) -> None:
        """Receive what is published to ``topic_filter`` (shared: ``$share/group/...``)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                ) -> Delivery:
        """Queue a publication; with QoS 1 it is kept and sent again over a reconnection."""

    def request(self, topic: str, payload: bytes, *, response_topic: str,
                correlation_data: bytes, qos: int = 1) -> Delivery:
        """Publish a request whose answers go to ``response_topic`` (to which the caller
        subscribes), each carrying ``correlation_data``."""

    def respond(self, topic: str, payload: bytes, *, correlation_data: bytes | None,
                qos: int = 1) -> Delivery:
        """Publish an answer to a request: on its response topic, with its correlation
        data."""

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message of a manually acknowledged session."""

    def close(self) -> None:
        """Disconnect cleanly (no Last Will), stop the threads."""
