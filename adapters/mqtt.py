"""The one module that imports paho-mqtt: ``estate.ports.Messaging`` over MQTT 5.

Everything paho-specific stays here: VERSION2 callbacks and explicit readiness (CONNACK,
SUBACK); return codes and paho's exceptions become ``BrokerError``; its ``MQTTMessageInfo``
becomes our ``Delivery``; subscriptions are restored on every (re)connection; shutdown
waits for the threads. Handlers run off paho's network thread, on the connection's worker
(``Handling.WORKER``), so a slow handler (a database that waits for a lock, a device
command) never stalls the connection's keep-alive, acknowledgements or other messages;
a handler that only enqueues may run on the network thread itself (``Handling.INLINE``).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from adapters.handler_worker import (
    MAX_BACKLOG_BYTES,
    MAX_BACKLOG_MESSAGES,
    HandlerWorker,
    call_handler,
    shown_topic,
)
from adapters.mqtt_delivery import PUBLICATION_REFUSALS, MqttDelivery, Refusals
from estate.errors import BrokerError
from estate.ports import Delivery, Handling, InboundMessage, MessageHandler, Session, Will
from estate.settings import MqttSettings
from estate.topics import is_filter, unshared

__all__ = ["InboundMessage", "MqttConnection", "Session", "Will"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Route:
    topic_filter: str
    handler: MessageHandler
    handling: Handling


class _Client(paho.Client):
    """paho's client, reading the socket in large pieces and every packet that has arrived
    each time it is ready.

    paho 2.x reads one packet per ``select()`` when it has no QoS 2 or outgoing messages
    pending, which is exactly a subscriber's case, and each packet in three ``recv`` calls
    (type, length, body). Every system call hands Python's GIL over and has to win it back
    from the threads doing the work, so a subscriber's network thread spent most of its
    time waiting. Here the socket is read 64 KiB at a time into a buffer that paho's reads
    are served from, and ``loop_read`` goes on until both are empty (BENCHMARKS.md has the
    effect). paho has no setting for either, so this overrides ``loop_read`` (same body,
    another bound) and ``_sock_recv``; it relies on paho internals of 2.1 and 2.2 (the pin
    in pyproject.toml), and tests/adapters/test_mqtt.py checks both behaviours.
    """

    # Enough to empty a socket buffer of small messages without starving the writes.
    READ_BURST = 1000
    RECV_BYTES = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer = b""
        self._buffer_at = 0
        self._buffer_socket: object = None  # the socket the buffered bytes came from

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._buffer_socket is not self._sock:  # a new connection: drop the old bytes
            self._buffer, self._buffer_at, self._buffer_socket = b"", 0, self._sock
        if self._buffer_at >= len(self._buffer):
            # paho's own read (its TLS and closed-socket handling), in a large piece.
            data = super()._sock_recv(self.RECV_BYTES)
            if not data:
                return data
            self._buffer, self._buffer_at = data, 0
        start = self._buffer_at
        self._buffer_at = min(start + bufsize, len(self._buffer))
        return self._buffer[start:self._buffer_at]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        packets = 0
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            packets += 1
            # Stop for the writes now and then, but never with bytes left in the buffer:
            # select() would not wake for them.
            if packets >= max(max_packets, self.READ_BURST) and \
                    self._buffer_at >= len(self._buffer):
                return MQTTErrorCode.MQTT_ERR_SUCCESS


def _check(rc: MQTTErrorCode | int, action: str) -> None:
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BrokerError(f"MQTT {action} failed: {paho.error_string(rc)}")


class MqttConnection:
    """``estate.ports.Messaging``: a connected MQTT 5 client with its own network thread,
    and a worker thread for the handlers that run off it."""

    def __init__(self, settings: MqttSettings, client_id: str, *,
                 session: Session | None = None, will: Will | None = None) -> None:
        self._settings = settings
        self._client_id = client_id
        self._session = session or Session()
        self._subscriptions: dict[str, int] = {}
        self._routes: list[_Route] = []
        self._by_filter: dict[str, list[_Route]] = {}  # the matcher's values
        self._only_inline: MessageHandler | None = None
        self._matcher = MQTTMatcher()  # type: ignore[no-untyped-call]
        self._worker: HandlerWorker | None = None
        self._connected = threading.Event()
        self._answered = threading.Event()  # a CONNACK came, accepting or refusing
        self._refused: str | None = None
        self._subscribed = threading.Event()
        self._awaiting_suback: set[int] = set()
        self._subscription_refused = False
        self._lock = threading.Lock()
        # The broker's refusals of our publications (docs/commands.md, section 10).
        self.refusals = Refusals()
        client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5,
                         manual_ack=self._session.manual_ack)
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        # Outgoing QoS 1 window. paho's default of 20 caps a publisher at 20 round trips
        # (400 messages/s over a 50 ms link). Not much more: on every PUBACK paho scans its
        # in-flight messages for the next queued one, so a window of 1,000 made a publisher
        # 2.7 times slower than one of 100 on the same load (BENCHMARKS.md).
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        # Reconnect quickly after a broker restart, back off (doubling) to 30 s while it
        # stays away. Both bounds are drawn at random per connection, so a site's gateways
        # do not retry in the same second after a restart, wave after wave: their delays
        # differ from the first attempt and drift further apart with each doubling.
        self.reconnect_delays_s = (random.uniform(0.5, 1.5), random.uniform(20.0, 30.0))
        client.reconnect_delay_set(min_delay=self.reconnect_delays_s[0],  # type: ignore[arg-type]
                                   max_delay=self.reconnect_delays_s[1])  # type: ignore[arg-type]
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_publish = self._handle_publish
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session.expiry_s:
            props.SessionExpiryInterval = self._session.expiry_s
        props.ReceiveMaximum = self._session.receive_maximum
        return props

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and start the network thread; wait until the broker accepted us."""
        try:
            rc = self._client.connect(self._settings.host, self._settings.port,
                                      keepalive=self._settings.keepalive,
                                      clean_start=self._session.clean_start,
                                      properties=self._connect_properties())
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach MQTT broker {self._settings.host}:"
                              f"{self._settings.port}: {exc}") from exc
        _check(rc, "connect")
        self._client.loop_start()
        self._answered.wait(timeout_s)
        if not self._connected.is_set():
            self.close()
            raise BrokerError(self._refused or f"no CONNACK within {timeout_s} s")

    def connect_async(self) -> None:
        """Start connecting in the background; retries until the broker is there."""
        try:
            self._client.connect_async(self._settings.host, self._settings.port,
                                       keepalive=self._settings.keepalive,
                                       clean_start=self._session.clean_start,
                                       properties=self._connect_properties())
        except ValueError as exc:  # a host or port paho cannot use
            raise BrokerError(f"cannot connect to MQTT broker {self._settings.host}:"
                              f"{self._settings.port}: {exc}") from exc
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set() and not self._subscription_refused

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s) and not self._subscription_refused

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1, *,
                  handling: Handling = Handling.WORKER) -> None:
        """Subscribe now (if connected) and again after every reconnection; ``handler``
        receives the messages that match ``topic_filter``."""
        if not is_filter(topic_filter):
            raise BrokerError(f"not a topic filter: {shown_topic(topic_filter)!r}")
        route = _Route(topic_filter, handler, handling)
        with self._lock:
            self._routes.append(route)
            self._only_inline = (handler if len(self._routes) == 1
                                 and handling is Handling.INLINE else None)
            matched = unshared(topic_filter)
            self._by_filter.setdefault(matched, []).append(route)
            self._matcher[matched] = self._by_filter[matched]
            self._subscriptions[topic_filter] = qos
            if handling is Handling.WORKER and self._worker is None:
                self._worker = HandlerWorker(f"mqtt-handlers-{self._client_id}"[:60],
                                       max(MAX_BACKLOG_MESSAGES, self._session.receive_maximum
                                           if self._session.manual_ack else 0),
                                       MAX_BACKLOG_BYTES)
            if not self.connected:
                return
            self._subscribed.clear()
            try:
                rc, mid = self._client.subscribe(topic_filter, qos)
            except ValueError as exc:
                raise BrokerError(f"cannot subscribe to {shown_topic(topic_filter)!r}: "
                                  f"{exc}") from exc
            if mid is not None:
                self._awaiting_suback.add(mid)
        _check(rc, f"subscribe to {shown_topic(topic_filter)}")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                ) -> Delivery:
        """Queue a publication; ``wait()`` on the result waits for the PUBACK."""
        return self._publish(topic, payload, qos, retain, None)

    def request(self, topic: str, payload: bytes, *, response_topic: str,
                correlation_data: bytes, qos: int = 1) -> Delivery:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation_data
        return self._publish(topic, payload, qos, False, props)

    def respond(self, topic: str, payload: bytes, *, correlation_data: bytes | None,
                qos: int = 1) -> Delivery:
        props = None
        if correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation_data
        return self._publish(topic, payload, qos, False, props)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                 props: Properties | None) -> Delivery:
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain,
                                        properties=props)
        except ValueError as exc:  # a wildcard in the topic, a payload too large
            raise BrokerError(f"cannot publish to {shown_topic(topic)!r}: {exc}") from exc
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0:
            # paho keeps a QoS > 0 message published while disconnected and sends it on
            # reconnection, but leaves NO_CONN in its info, so that waiting for it would
            # fail at once instead of waiting for the PUBACK that does come.
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        _check(info.rc, f"publish to {shown_topic(topic)}")
        return MqttDelivery(info, self.refusals)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with manual acknowledgement."""
        if qos > 0:
            self._client.ack(mid, qos)

    def close(self, timeout_s: float = 5.0) -> None:
        """Disconnect cleanly (no Last Will), stop the network thread, then the worker
        (after the message in hand)."""
        self._client.disconnect()
        self._client.loop_stop()
        if self._worker is not None:
            self._worker.stop(timeout_s)

    # paho's network thread calls these.
    def _handle_connect(self, client: paho.Client, userdata: Any, flags: Any,
                        reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self._refused = f"MQTT broker refused the connection: {reason}"
            log.error("%s", self._refused)
            self._answered.set()
            return
        with self._lock:
            subscriptions = list(self._subscriptions.items())
            self._subscription_refused = False
            self._awaiting_suback.clear()
            if subscriptions:
                self._subscribed.clear()
                _, mid = client.subscribe(subscriptions)
                if mid is not None:
                    self._awaiting_suback.add(mid)
            else:
                self._subscribed.set()
        log.info("connected to MQTT broker %s:%s (session present: %s)",
                 self._settings.host, self._settings.port, flags.session_present)
        self._connected.set()
        self._answered.set()

    def _handle_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                          reasons: list[ReasonCode], properties: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        with self._lock:
            if refused:
                self._subscription_refused = True
                log.error("MQTT broker refused a subscription: %s", ", ".join(refused))
            self._awaiting_suback.discard(mid)
            if not self._awaiting_suback:
                self._subscribed.set()

    def _handle_publish(self, client: paho.Client, userdata: Any, mid: int,
                        reason: ReasonCode, properties: Properties | None) -> None:
        """A PUBACK: paho marks the publication published after this, refused or not, so
        a refusal is recorded first (the message is still among paho's outgoing ones)."""
        if not reason.is_failure:
            return
        message = client._out_messages.get(mid)  # paho holds its lock around this call
        if message is not None:
            self.refusals.add(message.info, f"the broker refused it: {reason}")
        log.warning("MQTT broker refused publication %d: %s", mid, reason)

    def _refuse_in_flight(self, client: paho.Client, reason: ReasonCode) -> None:
        """The broker closed the connection for a reason about publications: whatever was
        in flight is refused (paho would send it again into the same refusal)."""
        with client._out_message_mutex:
            in_flight = [m for m in client._out_messages.values() if m.qos > 0]
        for message in in_flight:
            self.refusals.add(message.info, f"the broker cut the connection on it: {reason}")
        log.error("MQTT broker cut the connection (%s) with %d publications in flight",
                  reason, len(in_flight))

    def _handle_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                           reason: ReasonCode, properties: Properties | None) -> None:
        if getattr(flags, "is_disconnect_packet_from_server", False) and \
                reason.value in PUBLICATION_REFUSALS:
            self._refuse_in_flight(client, reason)
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was:
            log.warning("disconnected from MQTT broker: %s", reason)

    def _handle_message(self, client: paho.Client, userdata: Any,
                        message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        inbound = InboundMessage(message.topic, bytes(message.payload), message.qos,
                                 bool(message.retain), message.mid,
                                 getattr(props, "ResponseTopic", None) if props else None,
                                 getattr(props, "CorrelationData", None) if props else None)
        inline = self._only_inline
        if inline is not None:
            # One subscription, handled here: ingest's hot path pays no match, no hand-off.
            try:
                inline(inbound)
            except Exception:
                log.exception("handler failed on a message on %s", shown_topic(message.topic))
            return
        routes = self._routes
        if len(routes) != 1:
            # Several subscriptions: those whose filter matches; one takes everything the
            # broker sends.
            routes = [r for found in self._matcher.iter_match(message.topic)  # type: ignore[no-untyped-call]
                      for r in found]
            if not routes:
                log.debug("no handler for a message on %s", shown_topic(message.topic))
                if self._session.manual_ack:
                    self.ack(message.mid, message.qos)
                return
        for route in routes:
            if route.handling is Handling.INLINE:
                call_handler(route.handler, inbound)
            elif self._worker is not None:
                self._worker.put(route.handler, inbound)
