"""The gateway service through the real stack: pymodbus meters, Mosquitto, ingest, InfluxDB.

Each test runs its own Mosquitto (with persistence, as in production) so that it can stop
the broker without disturbing other tests, an ingest worker on it, and the web view, whose
``/api/readings`` says what was stored. What the gateway polled is recorded when it was
committed to the outbox, and must come out of the web API exactly: every reading, with its
value, once.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pymodbus.client import ModbusTcpClient

from adapters.mqtt import InboundMessage, MqttConnection
from adapters.ops_http import wait_healthy
from dispatch.__main__ import build_web
from dispatch.accounts.roles import Role
from dispatch.settings import DispatchSettings
from edge.gateway import Gateway
from edge.gateway_cli import gateway_command
from edge.gateway_config import load_meters
from edge.registers import GENERIC_THREE_PHASE, load_map
from edge.settings import GatewaySettings
from estate.errors import ConfigError
from estate.readings import Reading
from estate.senml import decode_pack
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import Channel, DeviceId, parse_topic, subscription
from launcher.servers import Mosquitto, find_binary, free_port
from tests.conftest import served
from tests.edge.test_modbus import RAW, UNIT_ID, modbus_server, registers_for
from tests.web_login import add_users, logged_in

log = logging.getLogger(__name__)

ESTATE = "demo"  # the web view's estate (the sample estate)
FACILITY = "gwtest"
METERS = 5
INTERVAL_S = 0.2
OUTAGE_S = 60.0  # the acceptance criterion's broker outage
POWER_ADDRESS = 8  # the sample map's power register (int32, W)

Key = tuple[str, str, str, int]  # device, quantity, channel, time_ms


@dataclass
class Stack:
    broker: Mosquitto
    mqtt: MqttSettings
    url: str
    http: httpx.Client


@pytest.fixture
def stack(tmp_path: Path, influx_settings: InfluxSettings, store: object,
          start_ingest: Callable[..., object]) -> Iterator[Stack]:
    """A private broker with ingest and the web view on it; InfluxDB is the session's."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    mqtt = MqttSettings(host="127.0.0.1", port=broker.port)
    start_ingest(mqtt=mqtt)
    parts = build_web(DispatchSettings(mqtt=mqtt, influx=influx_settings,
                                       registry_url=f"sqlite:///{tmp_path / 'registry.sqlite'}"))
    assert parts.registry is not None
    add_users(parts.registry, vera=Role.VIEWER)
    try:
        with served(parts.app) as url, logged_in(url, "vera") as http:
            yield Stack(broker, mqtt, url, http)
    finally:
        parts.close()
        broker.stop()


@contextlib.contextmanager
def meters(count: int) -> Iterator[list[int]]:
    """``count`` real pymodbus servers whose power register a writer keeps changing."""
    image = registers_for(load_map(GENERIC_THREE_PHASE), RAW)
    with contextlib.ExitStack() as servers:
        ports = [servers.enter_context(modbus_server(list(image))) for _ in range(count)]
        stop = threading.Event()
        writer = threading.Thread(target=_change_power, args=(ports, stop), daemon=True)
        writer.start()
        try:
            yield ports
        finally:
            stop.set()
            writer.join(10)


def _change_power(ports: list[int], stop: threading.Event) -> None:
    clients = [ModbusTcpClient("127.0.0.1", port=p, timeout=2, retries=0) for p in ports]
    try:
        for step in itertools.count():
            if stop.wait(0.05):
                return
            for index, client in enumerate(clients):
                watts = (index + 1) * 100_000 + step
                client.connect()  # type: ignore[no-untyped-call]
                client.write_registers(POWER_ADDRESS, ModbusTcpClient.convert_to_registers(
                    watts, data_type=ModbusTcpClient.DATATYPE.INT32), device_id=UNIT_ID)
    finally:
        for client in clients:
            client.close()  # type: ignore[no-untyped-call]


def write_meters_file(path: Path, ports: list[int]) -> Path:
    lines = ["meters:"]
    for index, port in enumerate(ports):
        lines.append(f"  - {{facility: {FACILITY}, device: m{index}, host: 127.0.0.1, "
                     f"port: {port}, unit_id: {UNIT_ID}, model: generic-three-phase}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_settings(tmp_path: Path, mqtt: MqttSettings, ports: list[int],
                     metrics_port: int = 0) -> GatewaySettings:
    return GatewaySettings(
        mqtt=mqtt, client_id=f"gw-{uuid.uuid4().hex[:8]}", estate=ESTATE, device="gw",
        meters_file=write_meters_file(tmp_path / "meters.yaml", ports),
        interval_s=INTERVAL_S, outbox_path=tmp_path / "outbox.sqlite3",
        metrics_port=metrics_port)


def health(url: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(url, timeout=10)
    return answer.status_code, answer.json()


def stored(http: httpx.Client, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """What the web view says is stored for the test facility in [start_ms, end_ms)."""

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    answer = http.get("/api/readings", params={
        "start": iso(start_ms), "end": iso(end_ms), "facility": FACILITY}, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    assert not body["truncated"]
    rows: list[dict[str, Any]] = body["readings"]
    return rows


def wait_until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.25)


def key(reading: Reading) -> Key:
    return (reading.device, reading.quantity, reading.channel, reading.time_ms)


def check_stored_exactly(rows: list[dict[str, Any]], polled: dict[Key, float]) -> None:
    """The stored rows are the polled readings: same keys, same values, each once."""
    keys = [(r["device"], r["quantity"], r["channel"], r["time_ms"]) for r in rows]
    assert len(keys) == len(set(keys)), "a reading is stored twice"
    got = dict(zip(keys, (r["value"] for r in rows), strict=True))
    missing = polled.keys() - got.keys()
    extra = got.keys() - polled.keys()
    assert not missing, f"{len(missing)} polled readings never arrived, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} stored readings were never polled, e.g. {sorted(extra)[:3]}"
    for k, value in polled.items():
        assert got[k] == pytest.approx(value, rel=1e-12), k


def per_series_counts(keys: set[Key] | dict[Key, float]) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for device, quantity, channel, _ in keys:
        counts[(device, quantity, channel)] = counts.get((device, quantity, channel), 0) + 1
    return counts


class Observer:
    """A subscriber on the real broker recording the order packs arrive in per meter.

    Mosquitto's own ``mosquitto_sub`` (libmosquitto, a client independent of ours), with a
    persistent session, so what the gateway replays before the observer itself has
    reconnected waits for it at the broker; it reconnects by itself after the restart."""

    def __init__(self, mqtt: MqttSettings) -> None:
        self.arrivals: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        topic = subscription(Channel.TELEMETRY, estate=ESTATE)
        self._process = subprocess.Popen(
            ["stdbuf", "-oL", find_binary("mosquitto_sub"), "-h", mqtt.host,
             "-p", str(mqtt.port), "-V", "mqttv5", "-q", "1", "-c", "-x", "600",
             "-i", f"observer-{uuid.uuid4().hex[:8]}", "-t", topic, "-F", "%t %p"],
            stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Subscribed once a message of its own comes back.
        probe = MqttConnection(mqtt, f"probe-{uuid.uuid4().hex[:8]}")
        probe.connect()
        deadline = time.monotonic() + 30
        while not self._ready.wait(0.2):
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            probe.publish(f"estate/v1/{ESTATE}/observer/probe/telemetry", b"[]", qos=1)
        probe.close()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            device = parse_topic(topic).device
            if device.facility == "observer":
                self._ready.set()
                continue
            first_ms = round(orjson.loads(payload)[0]["bt"] * 1000)
            with self._lock:
                self.arrivals.setdefault(device.device, []).append(first_ms)

    def total(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.arrivals.values())

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._reader.join(10)
        assert self._process.stdout is not None
        self._process.stdout.close()


def test_broker_down_for_a_minute_every_reading_arrives_once_and_in_order(
        stack: Stack, tmp_path: Path) -> None:
    polled: dict[Key, float] = {}
    pack_times: dict[str, list[int]] = {}
    lock = threading.Lock()

    def record(device: DeviceId, readings: list[Reading]) -> None:
        with lock:
            pack_times.setdefault(device.device, []).append(readings[0].time_ms)
            for reading in readings:
                polled[key(reading)] = reading.value

    def polled_count() -> int:
        with lock:
            return len(polled)

    observer = Observer(stack.mqtt)
    started = time.monotonic()
    with meters(METERS) as ports:
        settings = gateway_settings(tmp_path, stack.mqtt, ports, metrics_port=free_port())
        health_url = f"http://127.0.0.1:{settings.metrics_port}/health"
        gateway = Gateway(settings, load_meters(settings.meters_file, ESTATE), on_queued=record)
        stop = threading.Event()
        gateway.start()
        poll_thread = threading.Thread(target=gateway.run, args=(stop,), daemon=True)
        poll_thread.start()
        try:
            ready = wait_healthy(health_url, 60)
            assert ready is not None, "the gateway did not become ready"
            assert ready["checks"] == {"mqtt_connected": True, "subscribed": True,
                                       "forwarding": True, "polling": True}
            start_ms = time.time_ns() // 1_000_000 - 1000
            wait_until(lambda: {r["device"] for r in stored(stack.http, start_ms,
                                                            start_ms + 3_600_000)}
                       == {f"m{i}" for i in range(METERS)}, 60, "every meter stored")

            stack.broker.stop()
            with lock:
                before_outage = len(polled)
            wait_until(lambda: gateway.metrics.registry.get_sample_value(
                "gateway_mqtt_connected") == 0, 30, "the gateway to see the broker gone")
            status, body = health(health_url)
            assert status == 503
            assert body["checks"]["mqtt_connected"] is False
            assert body["checks"]["polling"] is True, "polling goes on offline"
            time.sleep(OUTAGE_S)
            queued_in_outage = len(gateway.outbox)
            with lock:
                polled_in_outage = len(polled) - before_outage
            stack.broker.start()
            assert wait_healthy(health_url, 120) is not None, "not ready after the outage"
            # Poll a little after the broker is back, then stop polling: the backlog and
            # the newest readings must all reach storage.
            wait_until(lambda: polled_count() > before_outage + polled_in_outage + 100, 30,
                       "more polls after the outage")
            stop.set()
            poll_thread.join(30)
            assert not poll_thread.is_alive()
            wait_until(lambda: len(gateway.outbox) == 0 and gateway.sender.in_flight == 0,
                       120, "the outbox to drain")
            registry = gateway.metrics.registry
            dropped = {reason: registry.get_sample_value("gateway_outbox_dropped_total",
                                                         {"reason": reason})
                       for reason in ("expired", "full", "oversize")}
        finally:
            stop.set()
            poll_thread.join(30)
            gateway.close()

    end_ms = max(t for times in pack_times.values() for t in times) + 1
    wait_until(lambda: len(stored(stack.http, start_ms, end_ms)) >= len(polled), 120,
               "ingest to store every reading")
    rows = stored(stack.http, start_ms, end_ms)
    observer.close()
    elapsed = time.monotonic() - started

    check_stored_exactly(rows, polled)
    assert per_series_counts({(r["device"], r["quantity"], r["channel"], r["time_ms"])
                              for r in rows}) == per_series_counts(polled)
    assert polled_in_outage > 0, "the gateway kept polling offline"
    assert queued_in_outage > 0, "and queued what it polled"
    assert dropped == {"expired": 0, "full": 0, "oversize": 0}
    for device, times in pack_times.items():
        assert times == sorted(set(times)), f"{device}: read times not strictly increasing"
        # The broker saw each meter's packs in read order; a pack sent again after a lost
        # PUBACK may repeat, but never overtakes a later one.
        arrived = list(dict.fromkeys(observer.arrivals.get(device, [])))
        assert arrived == sorted(arrived), f"{device}: packs arrived out of order"
        assert set(times) <= set(arrived), f"{device}: a pack never reached the broker"
    log.info("broker down %.0f s: %d readings polled (%d packs queued) during the outage; "
             "%d polled in all, %d stored, 0 duplicates; %d packs seen on the wire for %d "
             "polled; %.0f s", OUTAGE_S, polled_in_outage, queued_in_outage, len(polled),
             len(rows), observer.total(), sum(len(t) for t in pack_times.values()), elapsed)


_GATEWAY_PROCESS = """
import sys, threading
import orjson
from edge.gateway import Gateway
from edge.gateway_config import load_meters
from edge.settings import GatewaySettings
from estate.lifecycle import stop_on_signals
from estate.logs import configure_logging

configure_logging()
settings = GatewaySettings.model_validate_json(sys.argv[1])
journal = open(sys.argv[2], "ab", buffering=0)

def record(device, readings):
    journal.write(orjson.dumps([[r.device, r.quantity, r.channel, r.time_ms, r.value]
                                for r in readings]) + b"\\n")

gateway = Gateway(settings, load_meters(settings.meters_file, settings.estate),
                  on_queued=record)
stop = threading.Event()
stop_on_signals(stop)
gateway.start()
try:
    gateway.run(stop)
finally:
    gateway.close()
"""


def start_gateway_process(settings: GatewaySettings, journal: Path,
                          log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _GATEWAY_PROCESS, settings.model_dump_json(), str(journal)],
            stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])


def read_journal(path: Path) -> dict[Key, float]:
    polled: dict[Key, float] = {}
    if path.exists():
        for line in path.read_bytes().splitlines():
            for device, quantity, channel, time_ms, value in orjson.loads(line):
                polled[(device, quantity, channel, time_ms)] = value
    return polled


def retained_states(mqtt: MqttSettings, expected: int) -> dict[str, str]:
    """The retained status of each device of the estate, by ``facility/device``."""
    states: dict[str, str] = {}

    def record(message: InboundMessage) -> None:
        device = parse_topic(message.topic).device
        states[f"{device.facility}/{device.device}"] = orjson.loads(message.payload)["state"]

    reader = MqttConnection(mqtt, f"status-{uuid.uuid4().hex[:8]}")
    reader.subscribe(subscription(Channel.STATUS, estate=ESTATE), record, qos=1)
    reader.connect()
    try:
        wait_until(lambda: len(states) >= expected, 30, "retained status messages")
    finally:
        reader.close()
    return dict(states)


def outbox_rows(path: Path) -> list[tuple[str, bytes]]:
    db = sqlite3.connect(path)
    try:
        return [(t, bytes(p)) for t, p in
                db.execute("SELECT topic, payload FROM outbox ORDER BY id").fetchall()]
    finally:
        db.close()


def test_a_gateway_killed_with_readings_queued_loses_none_after_restart(
        stack: Stack, tmp_path: Path) -> None:
    started = time.monotonic()
    first_journal, second_journal = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    log_file = tmp_path / "gateway.log"
    with meters(METERS) as ports:
        settings = gateway_settings(tmp_path, stack.mqtt, ports)
        first = start_gateway_process(settings, first_journal, log_file)
        try:
            start_ms = time.time_ns() // 1_000_000 - 1000
            wait_until(lambda: len(stored(stack.http, start_ms, start_ms + 3_600_000)) > 0, 60,
                       "the first gateway's readings to be stored")
            stack.broker.stop()
            wait_until(lambda: len(outbox_rows(settings.outbox_path)) >= 10 * METERS, 60,
                       "readings to queue while the broker is down")
        finally:
            first.send_signal(signal.SIGKILL)
            assert first.wait(30) == -signal.SIGKILL
        queued = outbox_rows(settings.outbox_path)
        now_ms = time.time_ns() // 1_000_000
        queued_readings: dict[Key, float] = {}
        for topic, payload in queued:
            for reading in decode_pack(payload, parse_topic(topic).device, now_ms).readings:
                queued_readings[key(reading)] = reading.value
        first_polled = read_journal(first_journal)

        stack.broker.start()
        second = start_gateway_process(settings, second_journal, log_file)
        try:
            wait_until(lambda: len(read_journal(second_journal)) > 0, 60,
                       "the second gateway to poll")
            wait_until(lambda: not any(row in queued for row in outbox_rows(
                settings.outbox_path)), 90, "the second gateway to replay the outbox")
            online = retained_states(stack.mqtt, METERS + 1)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, log_file.read_text()
    left = len(outbox_rows(settings.outbox_path))
    offline = retained_states(stack.mqtt, METERS + 1)
    devices = {"edge/gw", *(f"{FACILITY}/m{i}" for i in range(METERS))}
    assert online == dict.fromkeys(devices, "online"), "births, retained, for all"
    assert offline == dict.fromkeys(devices, "offline"), "a clean stop marks all offline"
    second_polled = read_journal(second_journal)
    # A pack committed just before the kill may have missed the journal: the outbox has it.
    polled = first_polled | queued_readings | second_polled
    end_ms = max(k[3] for k in polled) + 1
    wait_until(lambda: len(stored(stack.http, start_ms, end_ms)) >= len(polled), 120,
               "ingest to store every reading")
    rows = stored(stack.http, start_ms, end_ms)

    assert queued_readings, "readings were queued when the gateway was killed"
    assert left == 0, "a graceful stop with the broker up leaves nothing behind"
    check_stored_exactly(rows, polled)
    assert "from before; replaying them" in log_file.read_text()
    log.info("killed with %d packs (%d readings) queued; %d polled by both processes, %d "
             "stored, 0 duplicates; %.0f s", len(queued), len(queued_readings), len(polled),
             len(rows), time.monotonic() - started)


def test_the_command_refuses_a_bad_meters_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "meters.yaml"
    bad.write_text("meters:\n  - {facility: a, device: b, host: h, model: no-such-meter}\n")
    monkeypatch.setenv("GATEWAY_OUTBOX_PATH", str(tmp_path / "outbox.sqlite3"))
    with pytest.raises(SystemExit) as exited:
        gateway_command(bad)
    assert exited.value.code == 2
    assert "no register map for model 'no-such-meter'" in capsys.readouterr().err
    twice = tmp_path / "twice.yaml"
    twice.write_text("meters:\n" + "  - {facility: a, device: b, host: h, model: "
                     "generic-three-phase}\n" * 2)
    with pytest.raises(ConfigError, match="a/b appears twice"):
        load_meters(twice, ESTATE)
    with pytest.raises(ConfigError, match=r"facility 'a b' is not 1-64"):
        load_meters(_write(tmp_path / "ident.yaml", "meters:\n  - {facility: 'a b', "
                           "device: b, host: h, model: generic-three-phase}\n"), ESTATE)
    assert not os.path.exists(tmp_path / "outbox.sqlite3"), "nothing starts on bad config"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
