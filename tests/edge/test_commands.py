"""The edge's command handler against the real broker and a real pymodbus TCP server.

A test client plays the control room: it publishes requests with MQTT 5 Response Topic and
Correlation Data and collects the answers. The Modbus server's registers are read back
through the server itself, so "done" is checked against what the device really holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from pymodbus.client import ModbusTcpClient

from adapters.mqtt import InboundMessage, MqttConnection
from edge.command_executors import (
    ExecutionError,
    ModbusExecutor,
    ModbusTarget,
    RegisterWrite,
    SimulatedAssetExecutor,
    SimulatedBattery,
    SimulatedGenset,
    SimulatedPump,
    encode_write,
    load_command_map,
)
from edge.command_handler import CommandHandler, CommandTarget
from edge.command_log import CommandLog
from estate.commands import (
    CommandPolicy,
    CommandRequest,
    CommandResponse,
    ResponseStatus,
    decode_response,
)
from estate.errors import ConfigError
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId
from launcher.servers import free_port
from tests.edge import servers

UNIT_ID = 3
DT = ModbusTcpClient.DATATYPE
BATTERY_KW = 10  # int32, two registers, scale 0.1
RUN = 20  # uint16, 1 = running
BATTERY_POLICY = CommandPolicy.from_mapping({"set_battery_kw": {"kw": {"min": -250, "max": 250}},
                                             "start": {}, "stop": {}})
BATTERY_REGISTERS = {
    "set_battery_kw": [RegisterWrite(address=BATTERY_KW, type="int32", scale=0.1, param="kw")],
    "start": [RegisterWrite(address=RUN, type="uint16", value=1)],
    "stop": [RegisterWrite(address=RUN, type="uint16", value=0)],
}


@contextmanager
def modbus_server(size: int = 64) -> Iterator[int]:
    """A real pymodbus TCP server holding ``size`` zeroed registers; yields its port."""
    with servers.modbus_server([0] * size, UNIT_ID) as port:
        yield port


def read_value(port: int, address: int, data_type: str, count: int) -> int | float:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert client.connect()
        response = client.read_holding_registers(address, count=count, device_id=UNIT_ID)
        assert not response.isError(), response
        value = ModbusTcpClient.convert_from_registers(response.registers,
                                                       data_type=DT[data_type.upper()])
        assert isinstance(value, int | float)
        return value
    finally:
        client.close()


def write_raw(port: int, address: int, registers: list[int]) -> None:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert client.connect()
        assert not client.write_registers(address, registers, device_id=UNIT_ID).isError()
    finally:
        client.close()


class ControlRoom:
    """A test client publishing requests and collecting every answer it receives."""

    def __init__(self, settings: MqttSettings, topics: list[str]) -> None:
        self.received: list[InboundMessage] = []
        self.lock = threading.Lock()
        self.connection = MqttConnection(settings, f"control-{uuid.uuid4().hex[:8]}")
        for topic in topics:
            self.connection.subscribe(topic, self._collect)
        self.connection.connect()
        assert self.connection.wait_subscribed(10), "the control room's subscriptions"

    def _collect(self, message: InboundMessage) -> None:
        with self.lock:
            self.received.append(message)

    def request(self, device: DeviceId, body: dict[str, object] | bytes, *,
                correlation: bytes | None = None,
                response_topic: str | None = "device") -> bytes:
        correlation = correlation or uuid.uuid4().bytes
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        topic = device.topic(Channel.COMMAND_RESPONSE) if response_topic == "device" \
            else response_topic
        if topic is None:  # a request without a Response Topic
            delivery = self.connection.respond(device.topic(Channel.COMMAND_REQUEST), payload,
                                               correlation_data=correlation)
        else:
            delivery = self.connection.request(device.topic(Channel.COMMAND_REQUEST), payload,
                                               response_topic=topic,
                                               correlation_data=correlation)
        assert delivery.wait(5)
        return correlation

    def answers(self, correlation: bytes, count: int,
                timeout_s: float = 15) -> list[tuple[str, CommandResponse]]:
        """The first ``count`` answers carrying ``correlation``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                found = [(m.topic, decode_response(m.payload)) for m in self.received
                         if m.correlation_data == correlation]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def settle(self, correlation: bytes, count: int) -> list[tuple[str, CommandResponse]]:
        """Exactly the answers to ``correlation`` once the handler is idle again."""
        self.answers(correlation, count)
        # An extra answer would have been published before the next one to a probe.
        probe = self.request(PROBE_DEVICE, b"probe")
        assert self.answers(probe, 1), "the handler stopped answering"
        return self.answers(correlation, 0)


PROBE_DEVICE = DeviceId("cmdtest", "plant", "probe")


def body(action: str, params: dict[str, object] | None = None, *, deadline_in_ms: int = 30_000,
         command_id: str | None = None) -> dict[str, object]:
    return {"id": command_id or str(uuid.uuid4()), "action": action, "params": params or {},
            "deadline_ms": time.time_ns() // 1_000_000 + deadline_in_ms,
            "issued_by": "test:edge"}


@dataclass
class Edge:
    handler: CommandHandler
    connection: MqttConnection
    control: ControlRoom
    modbus_port: int
    battery: DeviceId
    genset: DeviceId
    simulated: SimulatedAssetExecutor


def start_handler(mqtt_settings: MqttSettings, targets: list[CommandTarget],
                  log_path: Path) -> tuple[CommandHandler, MqttConnection]:
    handler = CommandHandler([*targets, CommandTarget(PROBE_DEVICE, CommandPolicy({}),
                                                      SimulatedAssetExecutor({}))], log_path)
    connection = MqttConnection(mqtt_settings, f"edge-{uuid.uuid4().hex[:8]}")
    connection.connect()
    handler.start(connection)
    assert connection.wait_subscribed(10), "the broker acknowledged the handler's SUBSCRIBEs"
    return handler, connection


@pytest.fixture
def edge(mqtt_settings: MqttSettings, tmp_path: Path) -> Iterator[Edge]:
    estate = f"cmd{uuid.uuid4().hex[:8]}"
    battery, genset = DeviceId(estate, "shared", "battery"), DeviceId(estate, "shared", "genset")
    simulated = SimulatedAssetExecutor({genset: SimulatedGenset(max_kw=400)})
    control = ControlRoom(mqtt_settings, [f"estate/v1/{estate}/+/+/cmd/res",
                                          PROBE_DEVICE.topic(Channel.COMMAND_RESPONSE),
                                          f"cmdtest/replies/{estate}"])
    with modbus_server() as port:
        executor = ModbusExecutor({battery: ModbusTarget(host="127.0.0.1", port=port,
                                                         unit_id=UNIT_ID,
                                                         actions=BATTERY_REGISTERS)})
        targets = [CommandTarget(battery, BATTERY_POLICY, executor),
                   CommandTarget(genset, CommandPolicy.from_mapping(
                       {"start": {}, "stop": {}, "set_power_kw": {"kw": {"min": 0, "max": 500}}}),
                       simulated)]
        handler, connection = start_handler(mqtt_settings, targets,
                                            tmp_path / "edge_commands.sqlite")
        try:
            yield Edge(handler, connection, control, port, battery, genset, simulated)
        finally:
            handler.stop()
            connection.close()
            executor.close()
            control.connection.close()


def _statuses(found: list[tuple[str, CommandResponse]]) -> list[tuple[str, str]]:
    return [(r.status.value, r.reason) for _, r in found]


def test_a_command_writes_the_scaled_value_into_the_holding_register(edge: Edge) -> None:
    command = body("set_battery_kw", {"kw": -120.5})
    correlation = edge.control.request(edge.battery, command)
    found = edge.control.settle(correlation, 2)
    assert _statuses(found) == [("accepted", ""), ("done", "")]
    assert {topic for topic, _ in found} == {edge.battery.topic(Channel.COMMAND_RESPONSE)}
    assert all(r.id == command["id"] for _, r in found)
    assert "register 10 <- [65535, 64331]" in found[1][1].detail
    # -120.5 kW at scale 0.1 is -1205 in the int32 at register 10.
    assert read_value(edge.modbus_port, BATTERY_KW, "int32", 2) == -1205

    start = edge.control.request(edge.battery, body("start"))
    assert _statuses(edge.control.answers(start, 2)) == [("accepted", ""), ("done", "")]
    assert read_value(edge.modbus_port, RUN, "uint16", 1) == 1
    assert edge.handler.log.answers(str(command["id"])) == [("accepted", "", False),
                                                             ("done", "", False)]


def test_answers_follow_the_response_topic_or_fall_back_to_the_device(edge: Edge) -> None:
    estate = edge.battery.estate
    custom = edge.control.request(edge.battery, body("stop"),
                                  response_topic=f"cmdtest/replies/{estate}")
    assert [t for t, _ in edge.control.answers(custom, 2)] == [f"cmdtest/replies/{estate}"] * 2
    bare = edge.control.request(edge.battery, body("stop"), response_topic=None)
    assert [t for t, _ in edge.control.answers(bare, 2)] == [
        edge.battery.topic(Channel.COMMAND_RESPONSE)] * 2


@pytest.mark.parametrize(("action", "params", "reason", "detail"), [
    ("set_battery_kw", {"kw": 300}, "out-of-range", "kw=300 is above the maximum 250"),
    ("set_battery_kw", {"kw": -250.5}, "out-of-range", "below the minimum -250"),
    ("launch", {}, "unknown-action", "'launch' is not an action"),
    ("set_power_kw", {"kw": 10}, "not-allowed", "not allowed for this device"),
    ("set_battery_kw", {}, "bad-param", "needs param 'kw'"),
])
def test_refused_commands_are_rejected_with_a_reason_and_not_executed(
        edge: Edge, action: str, params: dict[str, object], reason: str, detail: str) -> None:
    write_raw(edge.modbus_port, BATTERY_KW, [0, 42])
    correlation = edge.control.request(edge.battery, body(action, params))
    found = edge.control.settle(correlation, 1)
    assert _statuses(found) == [("rejected", reason)]
    assert detail in found[0][1].detail
    assert read_value(edge.modbus_port, BATTERY_KW, "int32", 2) == 42


def test_an_expired_command_is_rejected_and_not_executed(edge: Edge) -> None:
    command = body("set_battery_kw", {"kw": 100}, deadline_in_ms=-2_000)
    correlation = edge.control.request(edge.battery, command)
    found = edge.control.settle(correlation, 1)
    assert _statuses(found) == [("rejected", "expired")]
    passed_ms = int(found[0][1].detail.split()[3])
    assert passed_ms >= 2_000
    assert read_value(edge.modbus_port, BATTERY_KW, "int32", 2) == 0
    assert edge.handler.log.answers(str(command["id"])) == [("rejected", "expired", False)]


def test_a_malformed_request_is_rejected_with_its_correlation(edge: Edge) -> None:
    garbage = edge.control.request(edge.battery, b"{not json")
    found = edge.control.settle(garbage, 1)
    assert _statuses(found) == [("rejected", "malformed")]
    assert found[0][1].id == ""
    command = body("start")
    command["deadline_ms"] = 1_700_000_000  # seconds, not ms
    named = edge.control.request(edge.battery, command)
    found = edge.control.settle(named, 1)
    assert _statuses(found) == [("rejected", "malformed")]
    assert found[0][1].id == command["id"]
    assert "seconds sent by mistake" in found[0][1].detail


def test_a_duplicate_id_is_answered_again_without_executing_twice(
        edge: Edge, mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    command = body("set_battery_kw", {"kw": 50})
    first = edge.control.request(edge.battery, command)
    original = edge.control.answers(first, 2)
    assert _statuses(original) == [("accepted", ""), ("done", "")]
    assert read_value(edge.modbus_port, BATTERY_KW, "int32", 2) == 500
    # Someone changes the register locally; a second execution would put 500 back.
    write_raw(edge.modbus_port, BATTERY_KW, [0, 7])

    again = edge.control.request(edge.battery, command)
    found = edge.control.settle(again, 1)
    assert [r for _, r in found] == [original[1][1]], "the stored answer, unchanged"
    assert read_value(edge.modbus_port, BATTERY_KW, "int32", 2) == 7
    assert edge.handler.log.answers(str(command["id"])) == [
        ("accepted", "", False), ("done", "", False), ("done", "", True)]

    # The log survives a restart: a new handler on the same file still does not execute it.
    edge.handler.stop()
    edge.connection.close()
    executor = ModbusExecutor({edge.battery: ModbusTarget(
        host="127.0.0.1", port=edge.modbus_port, unit_id=UNIT_ID, actions=BATTERY_REGISTERS)})
    handler, connection = start_handler(mqtt_settings,
                                        [CommandTarget(edge.battery, BATTERY_POLICY, executor)],
                                        tmp_path / "edge_commands.sqlite")
    edge.handler, edge.connection = handler, connection
    after_restart = edge.control.request(edge.battery, command)
    found = edge.control.settle(after_restart, 1)
    assert [r for _, r in found] == [original[1][1]]
    assert read_value(edge.modbus_port, BATTERY_KW, "int32", 2) == 7
    executor.close()


def test_an_unreachable_device_fails_with_a_reason(
        mqtt_settings: MqttSettings, tmp_path: Path, edge: Edge) -> None:
    dead = DeviceId(edge.battery.estate, "shared", "dead")
    executor = ModbusExecutor({dead: ModbusTarget(host="127.0.0.1", port=free_port(),
                                                  unit_id=UNIT_ID, actions=BATTERY_REGISTERS)},
                              timeout_s=0.5)
    handler, connection = start_handler(mqtt_settings,
                                        [CommandTarget(dead, BATTERY_POLICY, executor)],
                                        tmp_path / "dead.sqlite")
    try:
        correlation = edge.control.request(dead, body("start"))
        found = edge.control.answers(correlation, 2)
    finally:
        handler.stop()
        connection.close()
    assert _statuses(found) == [("accepted", ""), ("failed", "device-unreachable")]


def test_the_simulated_genset_goes_through_the_broker(edge: Edge) -> None:
    genset = edge.simulated.asset(edge.genset)
    assert isinstance(genset, SimulatedGenset)
    early = edge.control.request(edge.genset, body("set_power_kw", {"kw": 80}))
    assert _statuses(edge.control.answers(early, 1)) == [("rejected", "invalid-state")]
    start = edge.control.request(edge.genset, body("start"))
    assert _statuses(edge.control.answers(start, 2)) == [("accepted", ""), ("done", "")]
    assert genset.running
    over = edge.control.request(edge.genset, body("set_power_kw", {"kw": 450}))
    found = edge.control.answers(over, 2)
    assert _statuses(found) == [("accepted", ""), ("done", "clamped")]
    assert genset.setpoint_kw == 400
    assert "asked 450 kW, set 400 kW" in found[1][1].detail


def _request(action: str, **params: float) -> CommandRequest:
    return CommandRequest(str(uuid.uuid4()), action, params, 2_000_000_000_000, "test")


def test_simulated_battery_is_clamped_by_its_state_of_charge() -> None:
    device = DeviceId("demo", "shared", "battery")
    battery = SimulatedBattery(max_kw=100, soc_pct=5)
    executor = SimulatedAssetExecutor({device: battery})
    done = executor.execute(device, _request("set_battery_kw", kw=-60))
    assert (done.reason, battery.setpoint_kw) == ("clamped", 0.0)
    assert "state of charge 5 % (empty)" in done.detail
    assert executor.execute(device, _request("set_battery_kw", kw=60)).reason == ""
    assert battery.setpoint_kw == 60
    battery.soc_pct = 96
    assert executor.execute(device, _request("set_battery_kw", kw=60)).reason == "clamped"
    assert battery.setpoint_kw == 0
    battery.soc_pct = 50
    assert executor.execute(device, _request("set_battery_kw", kw=-150)).reason == "clamped"
    assert battery.setpoint_kw == -100
    refusal = executor.precheck(device, _request("start"))
    assert refusal is not None
    assert refusal.reason == "not-allowed"


def test_simulated_pump_and_unknown_devices() -> None:
    pump_id = DeviceId("demo", "water", "pump")
    pump = SimulatedPump()
    executor = SimulatedAssetExecutor({pump_id: pump})
    assert executor.precheck(pump_id, _request("set_level_setpoint", m=2.5)) is None
    executor.execute(pump_id, _request("set_level_setpoint", m=2.5))
    executor.execute(pump_id, _request("start"))
    assert (pump.level_setpoint_m, pump.running) == (2.5, True)
    refusal = executor.precheck(DeviceId("demo", "water", "other"), _request("start"))
    assert refusal is not None
    assert refusal.reason == "not-allowed"


def test_register_encoding_and_its_limits() -> None:
    write = RegisterWrite(address=0, type="int16", scale=0.1, param="kw")
    assert encode_write(write, _request("set_power_kw", kw=-1.25)) == [0xFFF4]  # -12.5 -> -12
    with pytest.raises(ExecutionError, match="does not fit int16"):
        encode_write(write, _request("set_power_kw", kw=3_300))
    with pytest.raises(ExecutionError, match="needs numeric param"):
        encode_write(write, _request("set_power_kw"))
    floats = RegisterWrite(address=0, type="float32", param="m")
    assert encode_write(floats, _request("set_level_setpoint", m=12.5)) == [0x4148, 0]


def test_command_maps_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "battery.yaml"
    path.write_text("host: 10.0.0.5\nunit_id: 3\nactions:\n"
                    "  set_battery_kw: [{address: 10, type: int32, scale: 0.1, param: kw}]\n"
                    "  start: [{address: 20, type: uint16, value: 1}]\n")
    target = load_command_map(path)
    assert target.port == 502
    assert target.actions["set_battery_kw"][0].scale == 0.1
    path.write_text("host: h\nactions:\n  start: [{address: 20, scale: 0}]\n")
    with pytest.raises(ConfigError, match="scale must not be zero"):
        load_command_map(path)
    path.write_text("host: h\nactions:\n  start: [{address: 70000}]\n")
    with pytest.raises(ConfigError, match="address"):
        load_command_map(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_command_map(tmp_path / "missing.yaml")


def test_a_command_cut_short_by_a_stop_is_failed_on_restart(
        mqtt_settings: MqttSettings, tmp_path: Path, edge: Edge) -> None:
    path = tmp_path / "interrupted.sqlite"
    log = CommandLog(path)
    command_id = str(uuid.uuid4())
    correlation = uuid.uuid4().bytes
    log.record(edge.battery, b"{}", "start", 1_700_000_000_000,
               edge.battery.topic(Channel.COMMAND_RESPONSE), correlation,
               CommandResponse(command_id, ResponseStatus.ACCEPTED, at_ms=1_700_000_000_001))
    log.close()
    handler, connection = start_handler(mqtt_settings, [], path)
    try:
        found = edge.control.answers(correlation, 1)
        assert handler.log.answers(command_id)[-1] == ("failed", "interrupted", False)
    finally:
        handler.stop()
        connection.close()
    assert _statuses(found) == [("failed", "interrupted")]
    assert found[0][1].id == command_id


def test_a_device_listed_twice_is_a_config_error(tmp_path: Path) -> None:
    target = CommandTarget(PROBE_DEVICE, CommandPolicy({}), SimulatedAssetExecutor({}))
    with pytest.raises(ConfigError, match="twice"):
        CommandHandler([target, target], tmp_path / "x.sqlite")

