"""``umqtt.simple.MQTTClient`` over paho-mqtt, with umqtt.simple's blocking behaviour.

MQTT 3.1.1 like umqtt.simple, no thread of its own (the network moves only inside these
methods), a new connection on every ``connect()`` (earlier in-flight messages are not resent),
``OSError`` when the broker is unreachable or the connection drops, ``MQTTException`` when the
broker refuses. Differences: umqtt.simple waits for an answer (CONNACK, PUBACK, SUBACK) as
long as its socket does, this gives up after ``TIMEOUT_S`` with ``OSError(ETIMEDOUT)``;
``check_msg()`` hands over every message that has arrived, not at most one; ``ssl=True`` uses
paho's default TLS context (``ssl_params`` is not supported).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

TIMEOUT_S = 10.0

Callback = Callable[[bytes, bytes], Any]


class MQTTException(Exception):
    pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class MQTTClient:
    def __init__(self, client_id: str | bytes, server: str, port: int = 0,
                 user: str | None = None, password: str | None = None, keepalive: int = 0,
                 ssl: bool = False) -> None:
        self.client_id = _text(client_id)
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.cb: Callback | None = None
        self.lw_topic: str | None = None
        self.lw_msg: str | bytes | None = None
        self.lw_qos = 0
        self.lw_retain = False
        self._paho: paho.Client | None = None
        self._inbox: list[tuple[bytes, bytes]] = []
        self._connack: Any = None
        self._session_present = False
        self._subacks: dict[int, list[Any]] = {}

    @property
    def sock(self) -> Any:
        """The TCP socket of the current connection (None before the first)."""
        return self._paho.socket() if self._paho is not None else None

    def set_callback(self, f: Callback) -> None:
        self.cb = f

    def set_last_will(self, topic: str | bytes, msg: str | bytes, retain: bool = False,
                      qos: int = 0) -> None:
        assert 0 <= qos <= 2
        assert topic
        self.lw_topic, self.lw_msg, self.lw_retain, self.lw_qos = _text(topic), msg, retain, qos

    def connect(self, clean_session: bool = True) -> int:
        """Open a new connection; returns the broker's session-present flag."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=clean_session,
                             protocol=MQTTProtocolVersion.MQTTv311)
        if self.user is not None:
            client.username_pw_set(self.user, self.pswd)
        if self.ssl:
            client.tls_set()
        if self.lw_topic:
            client.will_set(self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._paho, self._connack, self._inbox = client, None, []
        # A refused or unreachable TCP connection raises OSError here, as in umqtt.
        client.connect(self.server, self.port, self.keepalive)
        self._until(lambda: self._connack is not None)
        if self._connack.is_failure:
            raise MQTTException(self._connack.value)
        return int(self._session_present)

    def disconnect(self) -> None:
        client = self._connected()
        client.disconnect()
        self._until(lambda: client.socket() is None)

    def ping(self) -> None:
        self._check(self._connected()._send_pingreq())  # paho has no public PINGREQ

    def publish(self, topic: str | bytes, msg: str | bytes, retain: bool = False,
                qos: int = 0) -> None:
        """Send; at QoS 1 return only after the broker's PUBACK."""
        assert qos in (0, 1), "umqtt.simple does not publish at QoS 2"
        info = self._connected().publish(_text(topic), msg, qos, retain)
        self._check(info.rc)
        self._until(info.is_published)

    def subscribe(self, topic: str | bytes, qos: int = 0) -> None:
        assert self.cb is not None, "Subscribe callback is not set"
        rc, mid = self._connected().subscribe(_text(topic), qos)
        self._check(rc)
        assert mid is not None
        self._until(lambda: mid in self._subacks)
        if any(code.is_failure for code in self._subacks.pop(mid)):
            raise MQTTException(mid)

    def wait_msg(self) -> None:
        """Block until a message arrives and pass it to the callback."""
        while not self._inbox:
            self._loop(1.0)
        self._deliver()

    def check_msg(self) -> None:
        """Pass whatever has arrived to the callback, without waiting."""
        self._loop(0.0)
        self._deliver()

    def _deliver(self) -> None:
        while self._inbox:
            topic, msg = self._inbox.pop(0)
            if self.cb is not None:
                self.cb(topic, msg)

    def _connected(self) -> paho.Client:
        if self._paho is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return self._paho

    def _loop(self, timeout: float) -> None:
        self._check(self._connected().loop(timeout))

    def _until(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(errno.ETIMEDOUT, "no answer from the MQTT broker")
            self._loop(min(left, 0.1))

    @staticmethod
    def _check(rc: MQTTErrorCode | int) -> None:
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(-1, paho.error_string(rc))  # umqtt: OSError(-1), connection closed

    # paho calls these from inside loop(), in the caller's thread.
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        self._session_present = bool(flags.session_present)
        self._connack = reason

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[Any],
                      properties: Any) -> None:
        self._subacks[mid] = reasons

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append((message.topic.encode(), bytes(message.payload)))
