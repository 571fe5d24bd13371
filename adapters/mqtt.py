"""The one wrapper around paho-mqtt: MQTT 5, VERSION2 callbacks, explicit readiness.

Everything paho-specific stays here: return codes become ``BrokerError``, the network
thread's messages reach the service through a ``MessageHandler`` callback, subscriptions
are restored on every (re)connection, and shutdown waits for the network thread.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from estate.errors import BrokerError
from estate.settings import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message as the broker delivered it; ``mid`` is what ``ack`` needs."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    response_topic: str | None = None
    correlation_data: bytes | None = None


MessageHandler = Callable[[InboundMessage], None]
ConnectionHandler = Callable[[bool], None]


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
    """A connected MQTT 5 client with its own network thread."""

    def __init__(self, settings: MqttSettings, client_id: str, *,
                 session: Session | None = None, will: Will | None = None,
                 on_message: MessageHandler | None = None,
                 on_connection: ConnectionHandler | None = None) -> None:
        self._settings = settings
        self._session = session or Session()
        self._on_message = on_message
        self._on_connection = on_connection
        self._subscriptions: dict[str, int] = {}
        self._connected = threading.Event()
        self._answered = threading.Event()  # a CONNACK came, accepting or refusing
        self._refused: str | None = None
        # Subscribed: the broker acknowledged every subscription since the last connection
        # (SUBACK), so what is published from now on reaches us.
        self._subscribed = threading.Event()
        self._unacknowledged: set[int] = set()  # SUBSCRIBE packets awaiting their SUBACK
        self._lock = threading.Lock()
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
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        """Connected, and every subscription acknowledged by the broker."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until ``subscribed``; False if it was not within ``timeout_s``."""
        return self._subscribed.wait(timeout_s)

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and start the network thread; wait until the broker accepted us."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session.expiry_s:
            props.SessionExpiryInterval = self._session.expiry_s
        props.ReceiveMaximum = self._session.receive_maximum
        try:
            rc = self._client.connect(self._settings.host, self._settings.port,
                                      keepalive=self._settings.keepalive,
                                      clean_start=self._session.clean_start, properties=props)
        except OSError as exc:
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
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session.expiry_s:
            props.SessionExpiryInterval = self._session.expiry_s
        props.ReceiveMaximum = self._session.receive_maximum
        self._client.connect_async(self._settings.host, self._settings.port,
                                   keepalive=self._settings.keepalive,
                                   clean_start=self._session.clean_start, properties=props)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now and again after every reconnection."""
        with self._lock:
            self._subscriptions[topic_filter] = qos
            if self.connected:
                # Under the lock: the SUBACK handler waits until the packet is counted.
                rc, mid = self._client.subscribe(topic_filter, qos)
                _check(rc, f"subscribe to {topic_filter}")
                self._subscribed.clear()
                if mid is not None:
                    self._unacknowledged.add(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, *,
                response_topic: str | None = None, correlation_data: bytes | None = None,
                ) -> paho.MQTTMessageInfo:
        """Queue a publication; ``wait_for_publish()`` on the result waits for the PUBACK."""
        props = None
        if response_topic is not None or correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = correlation_data
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0:
            # paho keeps a QoS > 0 message published while disconnected and sends it on
            # reconnection, but leaves NO_CONN in its info, so that wait_for_publish() would
            # raise at once instead of waiting for the PUBACK that does come.
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        _check(info.rc, f"publish to {topic}")
        return info

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with manual acknowledgement."""
        if qos > 0:
            self._client.ack(mid, qos)

    def close(self, timeout_s: float = 5.0) -> None:
        """Disconnect cleanly (no Last Will) and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

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
            self._unacknowledged.clear()
            if subscriptions:
                rc, mid = client.subscribe(subscriptions)
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                    self._unacknowledged.add(mid)
            else:
                self._subscribed.set()  # nothing to wait for
        log.info("connected to MQTT broker %s:%s (session present: %s)",
                 self._settings.host, self._settings.port, flags.session_present)
        self._connected.set()
        self._answered.set()
        if self._on_connection:
            self._on_connection(True)

    def _handle_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                           reason: ReasonCode, properties: Properties | None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was:
            log.warning("disconnected from MQTT broker: %s", reason)
            if self._on_connection:
                self._on_connection(False)

    def _handle_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                          reason_codes: list[ReasonCode], properties: Properties | None,
                          ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            # Not subscribed until the next connection tries again: readiness says so.
            log.error("MQTT broker refused a subscription: %s", ", ".join(refused))
            return
        with self._lock:
            self._unacknowledged.discard(mid)
            if not self._unacknowledged and self._connected.is_set():
                self._subscribed.set()

    def _handle_message(self, client: paho.Client, userdata: Any,
                        message: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        try:
            self._on_message(InboundMessage(message.topic, bytes(message.payload),
                                            message.qos, bool(message.retain), message.mid,
                                            response_topic, correlation))
        except Exception:
            # paho re-raises a handler's exception out of its network loop, which ends the
            # connection for good: one bad message must not silence every later one.
            log.exception("handler failed on a message on %s", message.topic)
