"""In-memory implementations of OUR OWN ports, for the fast tier's logic tests.

``InMemoryTimeSeriesStore`` implements ``estate.ports.TimeSeriesStore`` and
``InMemoryMessaging`` implements ``estate.ports.Messaging``. They are test doubles of the
ports the services are written against, not of Mosquitto or InfluxDB: nothing that claims
to prove delivery or storage rests on them. The adapters are proven against the real
servers (tests/adapters/), and every end-to-end path runs against them.

What they keep of the real semantics, because the logic under test relies on it: a point's
identity (measurement, tags, time) makes a rewritten point overwrite its fields; an absent
tag reads as ``""``; windows are aligned to the epoch and empty ones left out; a message
handler runs off the caller's thread unless it asked for the network thread (INLINE).
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from estate.errors import StoreRejected
from estate.ports import (
    EVERYWHERE,
    Aggregate,
    Aggregation,
    Delivery,
    FieldValue,
    Handling,
    InboundMessage,
    LatestValues,
    MessageHandler,
    Point,
    SeriesRef,
    TimeRange,
    Where,
)
from estate.topics import unshared

_NS_PER_MS = 1_000_000

# --- line protocol, as estate.lineprotocol writes it -----------------------------------------


def _split(text: str, separators: str) -> tuple[str, str, str]:
    """Text up to the first unescaped separator, the separator, and the rest."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1] if text[i + 1] in ",= \\" else text[i:i + 2])
            i += 2
            continue
        if ch in separators:
            return "".join(out), ch, text[i + 1:]
        out.append(ch)
        i += 1
    return "".join(out), "", ""


def _field_value(text: str) -> tuple[FieldValue, str]:
    """One field value and what follows it."""
    if text.startswith('"'):
        out, i = [], 1
        while text[i] != '"':
            if text[i] == "\\":
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out), text[i + 1:]
    raw, _, rest = _split(text, ", ")
    rest = text[len(raw):]
    if raw in ("true", "false"):
        return raw == "true", rest
    if raw.endswith("i"):
        return int(raw[:-1]), rest
    return float(raw), rest


def parse_line(text: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    """Measurement, tags, fields and time (ns) of one line."""
    measurement, sep, rest = _split(text, ", ")
    tags: dict[str, str] = {}
    while sep == ",":
        key, _, rest = _split(rest, "=")
        value, sep, rest = _split(rest, ", ")
        tags[key] = value
    fields: dict[str, FieldValue] = {}
    while True:
        key, _, rest = _split(rest, "=")
        fields[key], rest = _field_value(rest)
        if not rest.startswith(","):
            break
        rest = rest[1:]
    return measurement, tags, fields, int(rest.strip())


# --- the store -----------------------------------------------------------------------------


def _matches(tags: Mapping[str, str], where: Where) -> bool:
    if any(tags.get(k, "") != v for k, v in where.tags.items()):
        return False
    return where.any_of is None or any(
        all(tags.get(k, "") == v for k, v in entry.items()) for entry in where.any_of)


def _inside(time_ns: int, span: TimeRange | None) -> bool:
    if span is None:
        return True
    t_ms = time_ns // _NS_PER_MS
    return t_ms >= span.start_ms and (span.end_ms is None or t_ms < span.end_ms)


def _aggregate(function: Aggregate, values: list[tuple[int, FieldValue]]) -> FieldValue | None:
    if not values:
        return None
    numbers = [v for _, v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if function is Aggregate.LAST:
        return max(values, key=lambda tv: tv[0])[1]
    if function is Aggregate.COUNT:
        return len(values)
    if not numbers:
        return None
    if function is Aggregate.SUM:
        return sum(numbers)
    if function is Aggregate.MEAN:
        return sum(numbers) / len(numbers)
    return min(numbers) if function is Aggregate.MIN else max(numbers)


@dataclass
class InMemoryTimeSeriesStore:
    """``estate.ports.TimeSeriesStore`` in memory. ``retention_statements`` False acts as
    a store where retention belongs to the administrator (InfluxDB 3): ``ensure_retention``
    is refused."""

    retention_statements: bool = True
    retention: dict[str, str] = field(default_factory=dict)
    retention_requests: list[str] = field(default_factory=list)
    writes: list[tuple[str | None, list[str]]] = field(default_factory=list)
    # Per (policy, measurement), per tag set, per time: the fields. A query matches each
    # tag set once, not each point (a month of an estate is tens of thousands of points).
    _points: dict[tuple[str | None, str], dict[tuple[tuple[str, str], ...],
                                              dict[int, dict[str, FieldValue]]]] = field(
        default_factory=lambda: defaultdict(dict))

    def copy(self) -> InMemoryTimeSeriesStore:
        """A store of its own holding the same points (the writes log starts empty)."""
        twin = InMemoryTimeSeriesStore(retention_statements=self.retention_statements,
                                       retention=dict(self.retention))
        for where, tag_sets in self._points.items():
            twin._points[where] = {tags: {t: dict(fields) for t, fields in by_time.items()}
                                   for tags, by_time in tag_sets.items()}
        return twin

    def ensure_database(self) -> None:
        pass

    def ensure_retention(self, policy: str, duration: str, *, default: bool = False) -> None:
        self.retention_requests.append(policy)
        if not self.retention_statements:
            raise StoreRejected("retention policies are not supported here", 400)
        self.retention[policy] = duration

    def write_lines(self, lines: Sequence[str], retention_policy: str | None = None) -> None:
        self.writes.append((retention_policy, list(lines)))
        for text in lines:
            measurement, tags, fields, time_ns = parse_line(text)
            self._add((retention_policy, measurement), tags, time_ns, fields)

    def put(self, series: SeriesRef, tags: Mapping[str, str], fields: Mapping[str, FieldValue],
            time_ms: int) -> None:
        """Store a point without going through line protocol."""
        self._add((series.policy, series.measurement), tags, time_ms * _NS_PER_MS, fields)

    def _add(self, where: tuple[str | None, str], tags: Mapping[str, str], time_ns: int,
             fields: Mapping[str, FieldValue]) -> None:
        by_time = self._points[where].setdefault(tuple(sorted(tags.items())), {})
        by_time.setdefault(time_ns, {}).update(fields)

    def _series(self, series: SeriesRef, span: TimeRange | None, where: Where,
                ) -> list[tuple[dict[str, str], int, dict[str, FieldValue]]]:
        stored = self._points.get((series.policy, series.measurement), {})
        rows = []
        for tag_set, by_time in stored.items():
            tags = dict(tag_set)
            if _matches(tags, where):
                rows += [(tags, t, fields) for t, fields in by_time.items() if _inside(t, span)]
        rows.sort(key=lambda p: p[1])
        return rows

    def _groups(self, rows: Iterable[tuple[dict[str, str], int, dict[str, FieldValue]]],
                group_by: Sequence[str],
                ) -> list[tuple[dict[str, str], list[tuple[int, dict[str, FieldValue]]]]]:
        groups: dict[tuple[str, ...], list[tuple[int, dict[str, FieldValue]]]] = {}
        for tags, t, fields in rows:
            groups.setdefault(tuple(tags.get(k, "") for k in group_by), []).append((t, fields))
        return [(dict(zip(group_by, key, strict=True)), members)
                for key, members in sorted(groups.items())]

    def field_names(self, series: SeriesRef) -> list[str]:
        stored = self._points.get((series.policy, series.measurement), {})
        return sorted({name for by_time in stored.values() for fields in by_time.values()
                       for name in fields})

    def points(self, series: SeriesRef, span: TimeRange | None, *,
               fields: Sequence[str] | None = None, where: Where = EVERYWHERE,
               group_by: Sequence[str] = (), limit_per_group: int | None = None,
               ) -> list[Point]:
        out = []
        for tags, members in self._groups(self._series(series, span, where), group_by):
            chosen = [(t, f if fields is None else {n: f.get(n) for n in fields})
                      for t, f in members]
            chosen = [(t, f) for t, f in chosen if any(v is not None for v in f.values())]
            out += [Point(t // _NS_PER_MS, tags, f) for t, f in chosen[:limit_per_group]]
        return out

    def newest_points(self, series: SeriesRef, span: TimeRange | None, *,
                      fields: Sequence[str] | None = None, where: Where = EVERYWHERE,
                      group_by: Sequence[str] = ()) -> list[Point]:
        out = []
        for group in self._groups(self._series(series, span, where), group_by):
            tags, members = group
            t, f = members[-1]
            out.append(Point(t // _NS_PER_MS, tags,
                             f if fields is None else {n: f.get(n) for n in fields}))
        return out

    def latest_values(self, series: SeriesRef, fields: Sequence[str], span: TimeRange | None,
                      *, where: Where = EVERYWHERE, group_by: Sequence[str] = (),
                      ) -> list[LatestValues]:
        out = []
        for tags, members in self._groups(self._series(series, span, where), group_by):
            values = {n: v for n in fields
                      if (v := _aggregate(Aggregate.LAST, [(t, f[n]) for t, f in members
                                                           if n in f])) is not None}
            if values:
                out.append(LatestValues(tags, values))
        return out

    def window_aggregates(self, series: SeriesRef, aggregations: Sequence[Aggregation],
                          span: TimeRange, window_ms: int, *, where: Where = EVERYWHERE,
                          group_by: Sequence[str] = ()) -> list[Point]:
        if span.end_ms is None:
            raise ValueError("window aggregates need a time range that ends")
        window_ns = window_ms * _NS_PER_MS
        out = []
        for tags, members in self._groups(self._series(series, span, where), group_by):
            windows: dict[int, list[tuple[int, dict[str, FieldValue]]]] = defaultdict(list)
            for t, f in members:
                windows[t - t % window_ns].append((t, f))
            for start in sorted(windows):
                row = {a.name: _aggregate(a.function, [(t, f[a.field]) for t, f in
                                                       windows[start] if a.field in f])
                       for a in aggregations}
                if any(v is not None for v in row.values()):
                    out.append(Point(start // _NS_PER_MS, tags, row))
        return out

    def count(self, series: SeriesRef, span: TimeRange | None = None, *,
              where: Where = EVERYWHERE) -> int:
        return sum(len(f) for _, _, f in self._series(series, span, where))

    def ping(self) -> str:
        return "in-memory"

    def close(self) -> None:
        pass


# --- messaging -----------------------------------------------------------------------------


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT's matching of ``topic`` against a filter (``$share/group/`` ignored)."""
    wanted, levels = unshared(topic_filter).split("/"), topic.split("/")
    for i, part in enumerate(wanted):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(wanted) == len(levels)


@dataclass
class Published:
    """A publication the double recorded: what a broker would have received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


class InMemoryDelivery:
    """``estate.ports.Delivery`` that the test decides: delivered at once by default, or
    refused with the reason given."""

    def __init__(self, delivered: bool, refused: str | None = None) -> None:
        self._event = threading.Event()
        self._refused = refused
        if delivered or refused is not None:
            self._event.set()

    @property
    def delivered(self) -> bool:
        return self._event.is_set() and self._refused is None

    @property
    def refused(self) -> str | None:
        return self._refused if self._event.is_set() else None

    def refuse(self, reason: str) -> None:
        self._refused = reason
        self._event.set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s) and self._refused is None

    def acknowledge(self) -> None:
        self._event.set()


@dataclass
class InMemoryMessaging:
    """``estate.ports.Messaging`` in memory: publications are recorded, messages are
    injected by the test with ``inject``. ``acknowledge`` False leaves publications
    undelivered until the test acknowledges them (a broker that is away); a topic in
    ``refuse`` is refused with its reason (a broker's ACL)."""

    acknowledge: bool = True
    refuse: dict[str, str] = field(default_factory=dict)
    published: list[Published] = field(default_factory=list)
    deliveries: list[InMemoryDelivery] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    handler_threads: list[str] = field(default_factory=list)
    _subscriptions: list[tuple[str, MessageHandler, Handling]] = field(default_factory=list)
    _connected: bool = False
    _mids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self, timeout_s: float = 10.0) -> None:
        self._connected = True

    def connect_async(self) -> None:
        self._connected = True

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        return self._connected

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._connected

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1, *,
                  handling: Handling = Handling.WORKER) -> None:
        self._subscriptions.append((topic_filter, handler, handling))

    def subscriptions(self) -> list[str]:
        return [f for f, _, _ in self._subscriptions]

    def _record(self, message: Published) -> InMemoryDelivery:
        self.published.append(message)
        delivery = InMemoryDelivery(self.acknowledge, self.refuse.get(message.topic))
        self.deliveries.append(delivery)
        return delivery

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                ) -> Delivery:
        return self._record(Published(topic, payload, qos, retain))

    def request(self, topic: str, payload: bytes, *, response_topic: str,
                correlation_data: bytes, qos: int = 1) -> Delivery:
        return self._record(Published(topic, payload, qos, False, response_topic,
                                      correlation_data))

    def respond(self, topic: str, payload: bytes, *, correlation_data: bytes | None,
                qos: int = 1) -> Delivery:
        return self._record(Published(topic, payload, qos, False, None, correlation_data))

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def close(self) -> None:
        self._connected = False

    def inject(self, topic: str, payload: bytes, *, qos: int = 1,
               correlation_data: bytes | None = None, response_topic: str | None = None,
               ) -> int:
        """Deliver a message to the matching subscriptions as a broker would, and return
        when every handler is done. A WORKER handler runs on a thread of its own, never
        the caller's, as on the real connection; returns how many handlers ran."""
        message = InboundMessage(topic, payload, qos, False, next(self._mids), response_topic,
                                 correlation_data)
        ran = 0
        for topic_filter, handler, handling in list(self._subscriptions):
            if not topic_matches(topic_filter, topic):
                continue
            ran += 1
            if handling is Handling.INLINE:
                self._run(handler, message)
            else:
                worker = threading.Thread(target=self._run, args=(handler, message),
                                          name="in-memory-messaging-worker")
                worker.start()
                worker.join()
        return ran

    def _run(self, handler: MessageHandler, message: InboundMessage) -> None:
        self.handler_threads.append(threading.current_thread().name)
        handler(message)
