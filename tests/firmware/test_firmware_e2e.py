"""The MicroPython meter firmware, run on CPython through the shim, against the real parts.

``firmware_stubs/device/main.py`` runs its own main loop (a bounded number of passes) with
``umqtt.simple`` over paho, talking to the real Mosquitto; ingest runs in a thread and writes
to the real InfluxDB. An S0 pulse train is fed to the firmware's pulse input by a thread.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from adapters.influxdb_v1 import InfluxV1Store
from estate.ports import Where
from estate.settings import MqttSettings
from estate.stored import select_readings
from firmware_stubs.shim import MODULES as SHIM_MODULES
from firmware_stubs.shim import PATH as SHIM_PATH
from launcher.servers import free_port

FIRMWARE = SHIM_PATH.parent / "device" / "main.py"
WAIT_S = 10.0
PULSE_GAP_S = 0.01  # 1 Wh a pulse every 10 ms: about 360 kW


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class Listener:
    """A subscriber that records what it receives; subscribed (SUBACK) once constructed."""

    def __init__(self, settings: MqttSettings, topic_filter: str) -> None:
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"listener-{uuid.uuid4().hex[:8]}",
                             protocol=MQTTProtocolVersion.MQTTv311)
        client.on_connect = lambda c, *_: c.subscribe(topic_filter, 1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._receive
        client.connect(settings.host, settings.port)
        client.loop_start()
        self._client = client
        assert subscribed.wait(WAIT_S), f"no SUBACK for {topic_filter}"

    def _receive(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Message(message.topic, bytes(message.payload),
                                         bool(message.retain)))
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[Message]], bool]) -> list[Message]:
        """The messages so far, once ``done`` holds for them or after WAIT_S."""
        with self._changed:
            self._changed.wait_for(lambda: done(self.messages), WAIT_S)
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class Firmware:
    """The firmware module, loaded afresh for one test with a device id of its own."""

    module: Any  # the firmware's globals are its configuration: tests set them
    device: str
    clients: list[Any] = field(default_factory=list)

    def topic(self, channel: str) -> str:
        return str(self.module.topic(channel))

    @contextmanager
    def pulses(self) -> Iterator[None]:
        """The meter's S0 output pulses every PULSE_GAP_S while the block runs."""
        stop = threading.Event()

        def pulse() -> None:
            while not stop.wait(PULSE_GAP_S):
                self.module.machine.falling_edge(self.module.PULSE_PIN)

        thread = threading.Thread(target=pulse, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(WAIT_S)


@pytest.fixture
def umqtt(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The shim on sys.path; yields its umqtt.simple. Its modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(SHIM_PATH))
    yield importlib.import_module("umqtt.simple")
    for name in SHIM_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def firmware(umqtt: ModuleType, mqtt_settings: MqttSettings) -> Iterator[Firmware]:
    spec = importlib.util.spec_from_file_location(f"firmware_{uuid.uuid4().hex}", FIRMWARE)
    assert spec is not None
    assert spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fw = Firmware(module, f"fw-{uuid.uuid4().hex[:8]}")
    # Each test is a meter of its own, so that retained status never leaks between tests.
    module.DEVICE = fw.device
    module.CLIENT_ID = f"{module.ESTATE}.{module.FACILITY}.{fw.device}"
    module.PREFIX = f"{module.ESTATE}:{module.FACILITY}:{fw.device}:"
    module.BROKER, module.PORT = mqtt_settings.host, mqtt_settings.port
    module.PERIOD_S = 0  # a reading on every pass of the loop (the loop sleeps 200 ms)
    make_client = module.MQTTClient

    def recorded(*args: Any) -> Any:
        client = make_client(*args)
        fw.clients.append(client)
        return client

    module.MQTTClient = recorded
    yield fw
    for client in fw.clients:
        with suppress(OSError):
            client.disconnect()  # a clean goodbye: no Last Will
    cleaner = make_client(f"cleaner-{fw.device}", mqtt_settings.host, mqtt_settings.port)
    cleaner.connect()
    cleaner.publish(fw.topic("status"), b"", True, 1)  # drop the retained status
    cleaner.disconnect()


@pytest.fixture
def listen(mqtt_settings: MqttSettings) -> Iterator[Callable[[str], Listener]]:
    listeners: list[Listener] = []

    def make(topic_filter: str) -> Listener:
        listeners.append(Listener(mqtt_settings, topic_filter))
        return listeners[-1]

    yield make
    for listener in listeners:
        listener.close()


@pytest.fixture
def ingest(start_ingest: Callable[..., object]) -> None:
    start_ingest()


def _retained(listen: Callable[[str], Listener], topic: str) -> Message:
    """What a new subscriber to ``topic`` is given at once: the retained message."""
    messages = listen(topic).wait_for(bool)
    assert messages, f"nothing retained on {topic}"
    return messages[0]


def _packs(listener: Listener, count: int) -> list[list[dict[str, Any]]]:
    messages = listener.wait_for(lambda m: len(m) >= count)
    return [json.loads(m.payload) for m in messages]


def _stored(store: InfluxV1Store, device: str, count: int) -> dict[tuple[str, int], float]:
    """(quantity, time in ms) -> value of the device's readings, once ``count`` are stored."""
    deadline = time.monotonic() + WAIT_S
    while True:
        stored = {(r.quantity, r.time_ms): r.value
                  for r in select_readings(store, where=Where({"device": device}))}
        if len(stored) >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.1)


def _expected(packs: list[list[dict[str, Any]]]) -> dict[tuple[str, int], float]:
    """What ingest must store for the firmware's packs: W -> kW, Wh -> kWh, ms times."""
    to_canonical = {"W": 0.001, "Wh": 0.001}
    return {(record["n"], round(pack[0]["bt"] * 1000)): record["v"] * to_canonical[record["u"]]
            for pack in packs for record in pack}


def test_birth_message_is_retained_and_readings_reach_influxdb_in_canonical_units(
        firmware: Firmware, ingest: None, listen: Callable[[str], Listener],
        store: InfluxV1Store) -> None:
    passes = 6
    telemetry = listen(firmware.topic("telemetry"))
    started = time.time()
    with firmware.pulses():
        firmware.module.main(iterations=passes)
    finished = time.time()

    birth = _retained(listen, firmware.topic("status"))
    assert birth.retain
    state = json.loads(birth.payload)
    assert state["state"] == "online"
    assert started <= state["ts"] <= finished

    packs = _packs(telemetry, passes)
    assert len(packs) == passes
    for pack in packs:
        assert pack[0]["bn"] == f"demo:textile:{firmware.device}:"
        assert [(r["n"], r["u"]) for r in pack] == [("power", "W"), ("energy_import", "Wh")]
        assert started <= pack[0]["bt"] <= finished
    energy = [pack[1]["v"] for pack in packs]
    assert energy == sorted(energy)
    assert energy[-1] > 0
    assert any(pack[0]["v"] > 0 for pack in packs)

    expected = _expected(packs)
    assert len(expected) == 2 * passes
    assert _stored(store, firmware.device, len(expected)) == pytest.approx(expected, rel=1e-9)


def test_readings_taken_while_the_broker_is_unreachable_arrive_in_order_once_it_is_back(
        firmware: Firmware, ingest: None, listen: Callable[[str], Listener],
        store: InfluxV1Store, mqtt_settings: MqttSettings) -> None:
    offline, online = 5, 3
    attempts: list[int] = []
    back_at: list[float] = []
    make_client = firmware.module.MQTTClient

    def unreachable_at_first(*args: Any) -> Any:
        client = make_client(*args)
        connect = client.connect

        def connect_while_the_network_allows(clean_session: bool = True) -> Any:
            attempts.append(client.port)
            try:
                return connect(clean_session)
            finally:
                if len(attempts) == offline:  # the network comes back after this attempt
                    back_at.append(time.time())
                    client.port = mqtt_settings.port

        client.connect = connect_while_the_network_allows
        return client

    firmware.module.MQTTClient = unreachable_at_first
    closed_port = free_port()
    firmware.module.PORT = closed_port
    telemetry = listen(firmware.topic("telemetry"))
    with firmware.pulses():
        firmware.module.main(iterations=offline + online)

    # Every pass before the network came back failed to connect; then one connection held.
    assert attempts == [closed_port] * offline + [mqtt_settings.port]
    packs = _packs(telemetry, offline + online)
    time.sleep(0.5)
    assert len(telemetry.messages) == offline + online  # nothing more, nothing sent twice
    times = [pack[0]["bt"] for pack in packs]
    assert times == sorted(set(times))  # oldest first, no pack twice
    assert len([t for t in times if t < back_at[0]]) == offline  # the buffered ones first
    energy = [pack[1]["v"] for pack in packs]
    assert energy == sorted(energy)
    assert energy[-1] > energy[0]

    expected = _expected(packs)
    assert _stored(store, firmware.device, len(expected)) == pytest.approx(expected, rel=1e-9)


def test_broker_publishes_the_retained_last_will_when_the_connection_dies(
        firmware: Firmware, listen: Callable[[str], Listener]) -> None:
    firmware.module.main(iterations=2)
    status = listen(firmware.topic("status"))
    first = status.wait_for(bool)
    assert [json.loads(m.payload)["state"] for m in first] == ["online"]

    [client] = firmware.clients
    client.sock.close()  # the TCP connection ends without a DISCONNECT

    messages = status.wait_for(lambda m: len(m) >= 2)
    assert [json.loads(m.payload) for m in messages[1:]] == [{"state": "offline"}]
    will = _retained(listen, firmware.topic("status"))
    assert will.retain
    assert json.loads(will.payload) == {"state": "offline"}


def test_shim_client_raises_oserror_when_the_broker_is_unreachable(umqtt: ModuleType) -> None:
    client = umqtt.MQTTClient("unreachable", "127.0.0.1", free_port())
    with pytest.raises(OSError, match="refused"):
        client.connect()
    with pytest.raises(OSError, match=r"not (currently )?connected"):
        client.publish("estate/v1/demo/textile/x/telemetry", b"[]", False, 1)


def test_shim_client_subscribes_and_receives_like_umqtt(
        umqtt: ModuleType, mqtt_settings: MqttSettings) -> None:
    topic = f"shim/{uuid.uuid4().hex[:8]}"
    received: list[tuple[bytes, bytes]] = []
    receiver = umqtt.MQTTClient(f"rx-{uuid.uuid4().hex[:8]}", mqtt_settings.host,
                                mqtt_settings.port, keepalive=30)
    sender = umqtt.MQTTClient(f"tx-{uuid.uuid4().hex[:8]}", mqtt_settings.host,
                              mqtt_settings.port)
    receiver.set_callback(lambda t, m: received.append((t, m)))
    assert receiver.connect() == 0  # no session present
    receiver.subscribe(topic, 1)
    sender.connect()
    sender.publish(topic, "one", False, 1)
    receiver.wait_msg()
    sender.publish(topic.encode(), b"two", False, 0)
    deadline = time.monotonic() + WAIT_S
    while len(received) < 2 and time.monotonic() < deadline:
        receiver.check_msg()
        time.sleep(0.01)
    receiver.ping()
    sender.disconnect()
    receiver.disconnect()
    assert received == [(topic.encode(), b"one"), (topic.encode(), b"two")]
    assert receiver.sock is None  # disconnect closed the socket
    with pytest.raises(AssertionError, match="QoS 2"):
        sender.publish(topic, b"three", False, 2)
