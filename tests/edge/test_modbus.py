"""The Modbus gateway against a real pymodbus TCP server.

The server holds known values encoded per the sample register map with pymodbus' own
conversion helpers; the gateway polls it and its readings must come out of InfluxDB in
canonical units. A meter whose server is down, or that answers with an exception, is
skipped without stopping the others.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from adapters.influxdb_v1 import InfluxV1Store
from edge.modbus import ModbusGateway, ModbusMeter, decode, plan_blocks, poll
from edge.publisher import Publisher
from edge.registers import GENERIC_THREE_PHASE, WORDS, MeterMap, Point, load_map
from estate.errors import ConfigError
from estate.ports import Where
from estate.settings import MqttSettings
from estate.stored import select_readings
from estate.topics import DeviceId
from launcher.servers import free_port
from tests.edge import servers

DT = ModbusTcpClient.DATATYPE
UNIT_ID = 7

# Raw register values (before scale) of the sample map, and what InfluxDB must hold.
RAW: dict[tuple[str, str], int] = {
    ("voltage", "l1"): 2301, ("voltage", "l2"): 2305, ("voltage", "l3"): 2299,
    ("current", "l1"): 1234, ("current", "l2"): 1187, ("current", "l3"): 1302,
    ("frequency", ""): 5002, ("power_factor", ""): -950,
    ("power", ""): 12_345, ("reactive_power", ""): -2_500,
    ("energy_import", ""): 123_456_789, ("energy_export", ""): 4_567,
}
CANONICAL: dict[tuple[str, str], float] = {
    ("voltage", "l1"): 230.1, ("voltage", "l2"): 230.5, ("voltage", "l3"): 229.9,
    ("current", "l1"): 12.34, ("current", "l2"): 11.87, ("current", "l3"): 13.02,
    ("frequency", ""): 50.02, ("power_factor", ""): -0.95,
    ("power", ""): 12.345, ("reactive_power", ""): -2.5,  # W -> kW, var -> kvar
    ("energy_import", ""): 1_234_567.89, ("energy_export", ""): 45.67,  # Wh x 10 -> kWh
}


def encode(point: Point, value: float) -> list[int]:
    return ModbusTcpClient.convert_to_registers(
        value, data_type=DT[point.type.upper()], word_order=point.word_order)


def registers_for(meter_map: MeterMap, raw: dict[tuple[str, str], int]) -> list[int]:
    """A register image from address 0 holding ``raw`` at each point's address."""
    image = [0] * max(p.end for p in meter_map.points)
    for point in meter_map.points:
        image[point.address:point.end] = encode(point, raw[(point.quantity, point.channel)])
    return image


@contextmanager
def modbus_server(registers: list[int], unit_id: int = UNIT_ID) -> Iterator[int]:
    """A real pymodbus TCP server holding ``registers``; yields its port."""
    with servers.modbus_server(registers, unit_id) as port:
        yield port


@pytest.fixture(scope="module")
def meter_map() -> MeterMap:
    return load_map(GENERIC_THREE_PHASE)


# --- decoding -------------------------------------------------------------------------

def _point(data_type: str, word_order: str = "big", scale: float = 1.0) -> Point:
    return Point.model_validate({"quantity": "power", "address": 0, "type": data_type,
                                 "word_order": word_order, "scale": scale, "unit": "W"})


@pytest.mark.parametrize(("data_type", "word_order", "words", "expected"), [
    ("uint16", "big", [0xFFFE], 65_534),
    ("int16", "big", [0xFFFE], -2),
    ("uint32", "big", [0x0001, 0x0002], 0x0001_0002),
    ("uint32", "little", [0x0002, 0x0001], 0x0001_0002),
    ("int32", "big", [0xFFFF, 0xFFFE], -2),
    ("int32", "little", [0xFFFE, 0xFFFF], -2),
    ("float32", "big", [0x4148, 0x0000], 12.5),
    ("float32", "little", [0x0000, 0x4148], 12.5),
    ("uint64", "big", [0x0001, 0x0002, 0x0003, 0x0004], 0x0001_0002_0003_0004),
    ("uint64", "little", [0x0004, 0x0003, 0x0002, 0x0001], 0x0001_0002_0003_0004),
    ("int64", "big", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
    ("int64", "little", [0xFFFD, 0xFFFF, 0xFFFF, 0xFFFF], -3),
])
def test_every_data_type_and_word_order_decodes(data_type: str, word_order: str,
                                                words: list[int], expected: float) -> None:
    assert len(words) == WORDS[data_type]
    assert decode(_point(data_type, word_order), words) == expected
    # pymodbus encodes the same words, so the test server's image is trustworthy.
    assert encode(_point(data_type, word_order), expected) == words


def test_scale_is_applied_after_decoding() -> None:
    assert decode(_point("uint16", scale=0.1), [2301]) == pytest.approx(230.1)
    assert decode(_point("int16", scale=0.001), [0xFC4A]) == pytest.approx(-0.95)
    assert decode(_point("uint32", "little", scale=10), [4567, 0]) == 45_670


def test_adjacent_points_are_read_in_one_request(meter_map: MeterMap) -> None:
    blocks = plan_blocks(meter_map)
    assert [(b.address, b.count) for b in blocks] == [(0, 12), (100, 6)]
    assert sum(len(b.points) for b in blocks) == len(meter_map.points)
    small = plan_blocks(meter_map, max_block=4)
    assert all(b.count <= 4 for b in small)
    assert sum(len(b.points) for b in small) == len(meter_map.points)


def test_sample_map_loads_and_bad_maps_are_refused(tmp_path: Path,
                                                   meter_map: MeterMap) -> None:
    assert meter_map.model == "generic-three-phase"
    assert {(p.quantity, p.channel) for p in meter_map.points} == set(RAW)
    cases = {
        "quantity: mass": "unknown quantity",
        "unit: kg": "unknown unit",
        "unit: V": "does not measure power",
        "type: uint8": "type",
        "word_order: middle": "word_order",
        "channel: l.1": "channel",
        "address: -1": "address",
        "scale: 0": "scale must not be zero",
        "colour: red": "colour",
    }
    base = {"quantity": "power", "address": 0, "type": "int32", "unit": "W"}
    for change, reason in cases.items():
        key, value = change.split(": ")
        point = {**base, key: value}
        text = "model: m\npoints:\n  - {" + ", ".join(f"{k}: '{v}'" if k in {"unit"}
                                                     else f"{k}: {v}"
                                                     for k, v in point.items()) + "}\n"
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=reason):
            load_map(path)
    overlap = tmp_path / "overlap.yaml"
    overlap.write_text("model: m\npoints:\n"
                       "  - {quantity: power, address: 0, type: int32, unit: W}\n"
                       "  - {quantity: voltage, address: 1, type: uint16, unit: V}\n")
    with pytest.raises(ConfigError, match="overlaps power at register 1"):
        load_map(overlap)
    with pytest.raises(ConfigError, match="cannot read"):
        load_map(tmp_path / "missing.yaml")


@pytest.mark.servers
def test_poll_reads_the_real_server(meter_map: MeterMap) -> None:
    with modbus_server(registers_for(meter_map, RAW)) as port:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        try:
            assert client.connect()
            values = poll(client, meter_map, UNIT_ID)
        finally:
            client.close()
    by_name = {(q, c): (v, u) for q, c, v, u in values}
    assert by_name[("voltage", "l1")] == (pytest.approx(230.1), "V")
    assert by_name[("power", "")] == (12_345, "W")
    assert by_name[("energy_import", "")] == (1_234_567_890, "Wh")
    assert by_name[("power_factor", "")] == (pytest.approx(-0.95), "/")


# --- through MQTT and ingest into InfluxDB ---------------------------------------------

def _stored(store: InfluxV1Store, estate: str) -> dict[str, dict[tuple[str, str], Any]]:
    by_device: dict[str, dict[tuple[str, str], Any]] = {}
    for r in select_readings(store, where=Where({"estate": estate})):
        by_device.setdefault(r.device, {})[(r.quantity, r.channel)] = {
            "value": r.value, "time": r.time_ms}
    return by_device


def _wait_for(store: InfluxV1Store, estate: str, done: Callable[[dict], bool],
              timeout_s: float = 30) -> dict[str, dict[tuple[str, str], Any]]:
    deadline = time.monotonic() + timeout_s
    stored = _stored(store, estate)
    while not done(stored) and time.monotonic() < deadline:
        time.sleep(0.25)
        stored = _stored(store, estate)
    return stored


@pytest.mark.servers
def test_gateway_polls_meters_into_influxdb_in_canonical_units(
        meter_map: MeterMap, start_ingest: Callable[..., object], store: InfluxV1Store,
        mqtt_settings: MqttSettings) -> None:
    start_ingest()
    estate = f"mb{uuid.uuid4().hex[:8]}"
    good = DeviceId(estate, "plant", "main")
    down = DeviceId(estate, "plant", "down")
    faulty = DeviceId(estate, "plant", "faulty")
    # A map asking for registers the server does not hold: an exception response.
    beyond = MeterMap(model="beyond", points=[Point(quantity="power", address=5_000,
                                                    type="int32", unit="W")])
    publisher = Publisher(mqtt_settings, f"gw-{uuid.uuid4().hex[:8]}",
                          DeviceId(estate, "edge", "modbus-gw"))
    devices = [good, down, faulty]
    with modbus_server(registers_for(meter_map, RAW)) as port:
        gateway = ModbusGateway([
            ModbusMeter(down, "127.0.0.1", free_port(), UNIT_ID, meter_map),
            ModbusMeter(faulty, "127.0.0.1", port, UNIT_ID, beyond),
            ModbusMeter(good, "127.0.0.1", port, UNIT_ID, meter_map),
        ], publisher, timeout_s=2)
        publisher.start(devices)
        try:
            now_ms = time.time_ns() // 1_000_000
            started = time.monotonic()
            published = gateway.poll_once(now_ms)
            assert time.monotonic() - started < 10
        finally:
            gateway.close()
            publisher.stop(devices)

    assert set(published) == {good}
    stored = _wait_for(store, estate, lambda s: len(s.get("main", {})) >= len(CANONICAL))
    assert set(stored) == {"main"}, "only the meter that answered is stored"
    rows = stored["main"]
    assert set(rows) == set(CANONICAL)
    for name, expected in CANONICAL.items():
        assert rows[name]["value"] == pytest.approx(expected, rel=1e-9), name
        assert rows[name]["time"] == now_ms, name


@pytest.mark.servers
def test_run_loop_polls_until_stopped_and_survives_a_dead_meter(
        meter_map: MeterMap, mqtt_settings: MqttSettings) -> None:
    estate = f"mb{uuid.uuid4().hex[:8]}"
    good, down = DeviceId(estate, "plant", "main"), DeviceId(estate, "plant", "down")
    publisher = Publisher(mqtt_settings, f"gw-{uuid.uuid4().hex[:8]}",
                          DeviceId(estate, "edge", "modbus-gw"))
    passes: list[int] = []

    with modbus_server(registers_for(meter_map, RAW)) as port:
        gateway = ModbusGateway([ModbusMeter(down, "127.0.0.1", free_port(), 1, meter_map),
                                 ModbusMeter(good, "127.0.0.1", port, UNIT_ID, meter_map)],
                                publisher, timeout_s=2)
        poll_once = gateway.poll_once

        def counting(now_ms: int) -> dict:
            result = poll_once(now_ms)
            passes.append(len(result.get(good, [])))
            return result

        gateway.poll_once = counting  # type: ignore[method-assign]
        stop = threading.Event()
        publisher.start([good, down])
        thread = threading.Thread(target=gateway.run, args=(0.1, stop), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while len(passes) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        gateway.close()
        publisher.stop([good, down])
    assert not thread.is_alive()
    assert len(passes) >= 3
    assert set(passes) == {len(meter_map.points)}


@pytest.mark.servers
def test_a_meter_that_never_answers_times_out_and_is_skipped(meter_map: MeterMap) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # the kernel accepts connections; nothing ever answers
    sent: list[DeviceId] = []

    class Recorder:
        def publish(self, device: DeviceId, readings: list) -> None:
            sent.append(device)

    device = DeviceId("demo", "plant", "silent")
    gateway = ModbusGateway([ModbusMeter(device, "127.0.0.1", silent.getsockname()[1],
                                         UNIT_ID, meter_map)], Recorder(), timeout_s=0.3)
    try:
        started = time.monotonic()
        assert gateway.poll_once(0) == {}
        assert time.monotonic() - started < 5
    finally:
        gateway.close()
        silent.close()
    assert sent == []
