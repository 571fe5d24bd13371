"""Simulated meters behind real pymodbus TCP servers, polled by the real gateway code.

The gateway (``edge.modbus``) reads the servers over TCP and must get back the simulator's
own values, within the resolution of the register map's scaling; values beyond a register's
range saturate as a meter's would. As the simulation advances the registers follow it; a
meter held offline by a fault answers with an exception and is skipped.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient

from adapters.mqtt import InboundMessage, MqttConnection
from edge.__main__ import run as run_simulator
from edge.faults import InjectedFault, estate_faults
from edge.modbus import ModbusGateway, ModbusMeter, decode, poll
from edge.modbus_server import SimulatedModbusServers, encode, to_map_unit
from edge.publisher import Publisher
from edge.registers import GENERIC_THREE_PHASE, WORDS, MeterMap, Point, load_map
from edge.scale import synthetic_estate
from edge.settings import EdgeSettings
from edge.simulator import EstateSimulator, Snapshot
from estate.model import SAMPLE_ESTATE, load_estate
from estate.readings import Reading
from estate.settings import MqttSettings
from estate.topics import DeviceId
from estate.units import QUANTITIES, convert
from launcher.servers import free_port

T0 = int(datetime(2026, 7, 15, 9, 0, tzinfo=UTC).timestamp() * 1000)
RANGES = {"uint16": (0, 65_535), "int16": (-32_768, 32_767), "uint32": (0, 2**32 - 1),
          "int32": (-(2**31), 2**31 - 1), "uint64": (0, 2**63 - 1), "int64": (-(2**63), 2**63 - 1)}


@pytest.fixture(scope="module")
def meter_map() -> MeterMap:
    return load_map(GENERIC_THREE_PHASE)


def _point(data_type: str, word_order: str, scale: float = 1.0, unit: str = "W") -> Point:
    return Point.model_validate({"quantity": "power", "address": 0, "type": data_type,
                                 "word_order": word_order, "scale": scale, "unit": unit})


@pytest.mark.parametrize("data_type", sorted(WORDS))
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_encode_matches_pymodbus_and_decode_inverts_it(data_type: str, word_order: str) -> None:
    point = _point(data_type, word_order)
    low = 0 if data_type.startswith("u") else -2_000_000
    high = min(60_000 if "16" in data_type else 2_000_000_000, RANGES.get(data_type, (0, 0))[1])
    watts = np.array([low, -1, 0, 1, 12_345, high] if low < 0 else [0, 1, 12_345, high],
                     dtype=float)
    if data_type == "int16":
        watts = np.array([-32_000, -1, 0, 1, 12_345, 32_000], dtype=float)
    words = encode(point, watts / 1000)  # canonical kW -> the point's W
    assert words.shape == (len(watts), WORDS[data_type])
    oracle_type = ModbusTcpClient.DATATYPE[data_type.upper()]
    for value, row in zip(watts, words, strict=True):
        raw: float | int = float(value) if data_type == "float32" else int(value)
        assert row.tolist() == ModbusTcpClient.convert_to_registers(
            raw, data_type=oracle_type, word_order=word_order)
        assert decode(point, row.tolist()) == pytest.approx(value)


def test_scale_units_and_saturation() -> None:
    voltage = Point.model_validate({"quantity": "voltage", "address": 0, "type": "uint16",
                                    "scale": 0.1, "unit": "V"})
    assert encode(voltage, np.array([230.14, 230.16, -5.0, 7_000.0])).ravel().tolist() == [
        2301, 2302, 0, 65_535]
    energy = Point.model_validate({"quantity": "energy_import", "address": 0, "type": "uint64",
                                   "scale": 10, "unit": "Wh"})
    row = encode(energy, np.array([1_234_567.89]))[0]
    assert decode(energy, row.tolist()) == 1_234_567_890  # Wh, to the map's 10 Wh
    assert to_map_unit(np.array([1.5]), energy)[0] == 1_500.0


def _expected(meter_map: MeterMap, snapshot: Snapshot, sim: EstateSimulator,
              device: DeviceId, quantity: str, channel: str) -> tuple[float, float]:
    """The value the gateway should read (canonical unit) and the tolerance of the map."""
    point = next(p for p in meter_map.points if (p.quantity, p.channel) == (quantity, channel))
    kind, j = sim.locate(device)
    canonical = float(snapshot.values[kind][(quantity, channel)][j])
    low, high = RANGES[point.type]
    per_count = float(to_map_unit(np.array([1.0]), point)[0])  # map units per canonical unit
    raw_high, raw_low = high * point.scale / per_count, low * point.scale / per_count
    saturated = min(max(canonical, raw_low), raw_high)
    resolution = abs(point.scale) / per_count
    return saturated, resolution / 2 + 1e-9


def _check(readings: dict[DeviceId, list[Reading]], meter_map: MeterMap,
           sim: EstateSimulator) -> int:
    snapshot = sim.snapshot
    assert snapshot is not None
    checked = 0
    for device, values in readings.items():
        assert {(r.quantity, r.channel) for r in values} == {
            (p.quantity, p.channel) for p in meter_map.points}
        for r in values:
            expected, tolerance = _expected(meter_map, snapshot, sim, device, r.quantity,
                                            r.channel)
            assert abs(r.value - expected) <= tolerance, (device, r, expected)
            low, high = QUANTITIES[r.quantity].minimum, QUANTITIES[r.quantity].maximum
            assert low <= r.value <= high
            checked += 1
    return checked


@pytest.mark.servers
def test_gateway_polls_the_simulators_values_from_several_servers(
        meter_map: MeterMap, mqtt_settings: MqttSettings) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    sim = EstateSimulator(spec, 11)
    sim.step(T0)
    publisher = Publisher(mqtt_settings, f"gw-{uuid.uuid4().hex[:8]}",
                          DeviceId(spec.id, "edge", "modbus-test"))
    with SimulatedModbusServers(sim, units_per_server=4) as servers:
        electrical = [m.device for m in servers.served]
        # 20 electricity meters (the grid incomer, two feeders, the tenants' incomers and
        # sub-meters, ten workshop units), HVAC, PV, battery, genset, pump.
        assert len(electrical) == 25
        assert len(set(servers.ports)) == 7
        assert {m.unit_id for m in servers.served} == {1, 2, 3, 4}
        gateway = ModbusGateway(servers.meters, publisher, timeout_s=2)
        publisher.start(electrical)
        try:
            first = gateway.poll_once(T0)
            assert set(first) == set(electrical)
            assert _check(first, meter_map, sim) == 25 * len(meter_map.points)
            # The registers follow the simulation.
            sim.step(T0 + 3_600_000)
            servers.update()
            second = gateway.poll_once(T0 + 3_600_000)
            assert _check(second, meter_map, sim) == 25 * len(meter_map.points)
        finally:
            gateway.close()
            publisher.stop(electrical)
    main = DeviceId("demo", "textile", "main")
    energy = {r.quantity: r.value for r in first[main]}["energy_import"]
    energy2 = {r.quantity: r.value for r in second[main]}["energy_import"]
    assert energy2 > energy
    # Large currents saturate at the generic map's 655.35 A, as the meter's register would.
    assert {r.value for r in first[main] if r.quantity == "current"} == {655.35}


@pytest.mark.servers
def test_offline_meter_answers_with_an_exception_and_is_skipped(meter_map: MeterMap) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    start = datetime.fromtimestamp(T0 / 1000, UTC)
    fault = InjectedFault(facility="metal", meter="compressors", kind="offline",
                          start=start, end=start + timedelta(hours=1))
    sim = EstateSimulator(spec, 2, faults=estate_faults(spec, [fault]))
    sim.step(T0)
    sent: list[DeviceId] = []

    class Recorder:
        def publish(self, device: DeviceId, readings: list[Reading]) -> None:
            sent.append(device)

    with SimulatedModbusServers(sim) as servers:
        gateway = ModbusGateway(servers.meters, Recorder(), timeout_s=2)  # type: ignore[arg-type]
        try:
            offline = DeviceId("demo", "metal", "compressors")
            assert set(gateway.poll_once(T0)) == {m.device for m in servers.served} - {offline}
            sim.step(T0 + 3_600_000)
            servers.update()
            assert offline in gateway.poll_once(T0 + 3_600_000)
        finally:
            gateway.close()
    assert offline in sent


@pytest.mark.servers
def test_a_thousand_meters_on_five_servers(meter_map: MeterMap) -> None:
    spec = synthetic_estate(2_000, seed=5)
    sim = EstateSimulator(spec, 5)
    sim.advance(T0)
    electrical = [d for d in sim.devices
                  if sim.locate(d)[0] in ("electricity", "hvac", "pv", "battery", "genset")]
    with SimulatedModbusServers(sim, devices=electrical[:1_000]) as servers:
        assert len(servers.served) == 1_000
        assert len(servers.ports) == 5
        # The first and last unit of every server, read with the gateway's own poll.
        corners = [m for k, m in enumerate(servers.served)
                   if m.unit_id in (1, 247) or k == len(servers.served) - 1]
        by_device = {m.device: m for m in servers.meters}
        checked = 0
        for served in corners:
            meter = by_device[served.device]
            client = ModbusTcpClient(meter.host, port=meter.port, timeout=2, retries=0)
            try:
                assert client.connect()
                values = poll(client, meter_map, meter.unit_id)
            finally:
                client.close()
            readings = {served.device: [Reading("x", "x", "x", q, c,
                                                convert(v, u, QUANTITIES[q]), T0)
                                        for q, c, v, u in values]}
            checked += _check(readings, meter_map, sim)
    assert checked == len(corners) * len(meter_map.points)


@pytest.mark.servers
def test_estate_simulate_serves_modbus_and_publishes(meter_map: MeterMap,
                                                     mqtt_settings: MqttSettings,
                                                     tmp_path: Path) -> None:
    """The composition root with EDGE_MODBUS_PORT: a gateway polls it while it publishes."""
    estate_topic = "estate/v1/demo/+/+/telemetry"
    received: list[str] = []
    got_one = threading.Event()

    def handle(message: InboundMessage) -> None:
        received.append(message.topic)
        got_one.set()

    listener = MqttConnection(mqtt_settings, f"listen-{uuid.uuid4().hex[:8]}")
    listener.subscribe(estate_topic, handle, 1)
    listener.connect()
    port = free_port()
    settings = EdgeSettings(mqtt=mqtt_settings, interval_s=0.2, modbus_port=port,
                            command_log_path=tmp_path / "commands.sqlite",
                            client_id=f"sim-{uuid.uuid4().hex[:8]}")
    stop = threading.Event()
    thread = threading.Thread(target=run_simulator, args=(settings, stop), daemon=True)
    thread.start()
    try:
        assert got_one.wait(20), "the simulator published nothing"
        main = ModbusMeter(DeviceId("demo", "textile", "main"), "127.0.0.1", port, 1, meter_map)
        deadline = time.monotonic() + 20
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        try:
            while not client.connect() and time.monotonic() < deadline:
                time.sleep(0.1)
            values = {(q, c): v for q, c, v, _ in poll(client, meter_map, main.unit_id)}
        finally:
            client.close()
    finally:
        stop.set()
        thread.join(20)
        listener.close()
    assert not thread.is_alive()
    assert 200 < values[("voltage", "l1")] < 260
    assert values[("energy_import", "")] > 1_000 * 1000  # Wh: the register starts above 1 MWh
    assert any(t.endswith("/textile/main/telemetry") for t in received)
