"""The one wrapper around paho-mqtt: MQTT 5, VERSION2 callbacks, explicit readiness.

Everything paho-specific stays here: return codes become ``BrokerError``, the network
thread's messages reach the service through a ``MessageHandler`` callback, subscriptions
are restored on every (re)connection, reconnection backs off with random jitter
(``ReconnectBackoff``), and shutdown waits for the network thread.
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


class ReconnectBackoff:
    """Delays between reconnection attempts: exponential, each one randomised.

    Attempt ``n`` (from 0) waits a random time between half and all of
    ``min(max_s, first_s * 2**n)``: 0.5-1 s, 1-2 s, 2-4 s, ... and at most 15-30 s. Without
    the randomness every gateway of a site would retry in the same second after a broker
    restart, wave after wave; with it their attempts spread out and drift further apart
    with each failure. Keeping at least half the delay still backs off a broker in trouble.
    """

    def __init__(self, first_s: float = 1.0, max_s: float = 30.0,
                 rng: random.Random | None = None) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError("need 0 < first_s <= max_s")
        self.first_s = first_s
        self.max_s = max_s
        # Each connection draws from its own generator, seeded from the OS: two gateways
        # started from the same image at the same instant still get different delays.
        self._rng = rng or random.Random()
        self._attempt = 0
        self._lock = threading.Lock()

    def next_delay(self) -> float:
        """The wait before the next attempt; each call is one more failed attempt."""
        with self._lock:
            ceiling = min(self.max_s, self.first_s * 2 ** min(self._attempt, 32))
            self._attempt += 1
            return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """A connection succeeded: the next loss starts again from ``first_s``."""
        with self._lock:
            self._attempt = 0


def _check(rc: MQTTErrorCode | int, action: str) -> None:
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BrokerError(f"MQTT {action} failed: {paho.error_string(rc)}")


class MqttConnection:
    """A connected MQTT 5 client with its own network thread."""

    def __init__(self, settings: MqttSettings, client_id: str, *,
                 session: Session | None = None, will: Will | None = None,
                 on_message: MessageHandler | None = None,
                 on_connection: ConnectionHandler | None = None,
                 backoff: ReconnectBackoff | None = None) -> None:
        self._settings = settings
        self._session = session or Session()
        self._on_message = on_message
        self._on_connection = on_connection
        self._subscriptions: dict[str, int] = {}
        self._connected = threading.Event()
        self._answered = threading.Event()  # a CONNACK came, accepting or refusing
        self._refused: str | None = None
        self._lock = threading.Lock()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5,
                             manual_ack=self._session.manual_ack)
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        # Outgoing QoS 1 window: paho's default of 20 caps a publisher at 20 round trips.
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        # Reconnect quickly after a broker restart, back off to 30 s while it stays away,
        # with jitter. Paho only doubles a fixed delay, so before each of its waits (always
        # preceded by on_disconnect or on_connect_fail) the delay is set to the next value
        # of our own backoff, as both bounds: paho then waits exactly that long.
        self.backoff = backoff or ReconnectBackoff()
        self.last_reconnect_delay_s: float | None = None
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._handle_connect_fail
        client.on_message = self._handle_message
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

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
            connected = self.connected
        if connected:
            rc, _ = self._client.subscribe(topic_filter, qos)
            _check(rc, f"subscribe to {topic_filter}")

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
        # Under the lock that subscribe() takes: a filter added concurrently is either in
        # this list or added after "connected" is set, so subscribe() sends it itself.
        with self._lock:
            subscriptions = list(self._subscriptions.items())
            if subscriptions:
                client.subscribe(subscriptions)
            self._connected.set()
        log.info("connected to MQTT broker %s:%s (session present: %s)",
                 self._settings.host, self._settings.port, flags.session_present)
        self.backoff.reset()
        self._answered.set()
        if self._on_connection:
            self._on_connection(True)

    def _handle_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                           reason: ReasonCode, properties: Properties | None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._schedule_reconnect(client)
        if was:
            log.warning("disconnected from MQTT broker: %s", reason)
            if self._on_connection:
                self._on_connection(False)

    def _handle_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._schedule_reconnect(client)

    def _schedule_reconnect(self, client: paho.Client) -> None:
        delay = self.backoff.next_delay()
        self.last_reconnect_delay_s = delay
        # Paho annotates the delays as int but only compares, doubles and sleeps them.
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def _handle_message(self, client: paho.Client, userdata: Any,
                        message: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        self._on_message(InboundMessage(message.topic, bytes(message.payload), message.qos,
                                        bool(message.retain), message.mid, response_topic,
                                        correlation))
