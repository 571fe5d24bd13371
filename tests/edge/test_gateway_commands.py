"""Commands at the edge through the gateway service: real broker, real pymodbus devices.

The test plays the control room with its own MQTT 5 client: it publishes requests with a
Response Topic and Correlation Data, reads the answers, and reads the battery's holding
registers back from the Modbus server. The gateway runs as in production: polling a
meter, forwarding its readings, and taking commands for the battery.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.gateway import Gateway
from edge.gateway_cli import gateway_command
from edge.gateway_config import load_command_devices, load_meters
from edge.registers import GENERIC_THREE_PHASE, load_map
from edge.settings import GatewaySettings
from estate.commands import CommandResponse
from estate.errors import ConfigError
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId
from tests.edge import test_commands as commands
from tests.edge import test_modbus as modbus
from tests.edge.test_commands import ControlRoom, body, read_value, write_raw

FACILITY = "utilities"
BATTERY_KW = 10  # int32, scale 0.1
RUN = 20  # uint16


def commands_yaml(port: int) -> str:
    return f"""devices:
  - facility: {FACILITY}
    device: battery
    policy:
      set_battery_kw: {{kw: {{min: -500, max: 500}}}}
      start: {{}}
      stop: {{}}
    modbus:
      host: 127.0.0.1
      port: {port}
      unit_id: {commands.UNIT_ID}
      actions:
        set_battery_kw: [{{address: {BATTERY_KW}, type: int32, scale: 0.1, param: kw}}]
        start: [{{address: {RUN}, type: uint16, value: 1}}]
        stop: [{{address: {RUN}, type: uint16, value: 0}}]
"""


@dataclass
class Site:
    settings: GatewaySettings
    battery: DeviceId
    battery_port: int
    control: ControlRoom


@pytest.fixture
def site(mqtt_settings: MqttSettings, tmp_path: Path) -> Iterator[Site]:
    estate = f"gwc{uuid.uuid4().hex[:8]}"
    battery = DeviceId(estate, FACILITY, "battery")
    image = modbus.registers_for(load_map(GENERIC_THREE_PHASE), modbus.RAW)
    with modbus.modbus_server(image) as meter_port, commands.modbus_server() as battery_port:
        meters_file = tmp_path / "meters.yaml"
        meters_file.write_text(
            f"meters:\n  - {{facility: {FACILITY}, device: main, host: 127.0.0.1, "
            f"port: {meter_port}, unit_id: {modbus.UNIT_ID}, model: generic-three-phase}}\n")
        commands_file = tmp_path / "commands.yaml"
        commands_file.write_text(commands_yaml(battery_port))
        settings = GatewaySettings(
            mqtt=mqtt_settings, client_id=f"gw-{uuid.uuid4().hex[:8]}", estate=estate,
            facility=FACILITY, device="gw", meters_file=meters_file, interval_s=0.5,
            outbox_path=tmp_path / "outbox.sqlite3", commands_file=commands_file,
            command_log_path=tmp_path / "edge_commands.sqlite")
        control = ControlRoom(mqtt_settings, [battery.topic(Channel.COMMAND_RESPONSE)])
        try:
            yield Site(settings, battery, battery_port, control)
        finally:
            control.connection.close()


@contextlib.contextmanager
def running(settings: GatewaySettings) -> Iterator[Gateway]:
    """The gateway polling and taking commands, as ``estate edge`` runs it."""
    gateway = Gateway(settings, load_meters(settings.meters_file, settings.estate))
    stop = threading.Event()
    gateway.start()
    poller = threading.Thread(target=gateway.run, args=(stop,), daemon=True)
    poller.start()
    try:
        assert gateway.connection.wait_connected(30), "the gateway reached the broker"
        # Mosquitto handles one client's packets in order: once this PUBACK is back, the
        # SUBSCRIBE sent on connecting is in force.
        gateway.connection.publish(f"gwtest/barrier/{uuid.uuid4().hex}", b"",
                                   qos=1).wait(10)
        yield gateway
    finally:
        stop.set()
        poller.join(30)
        gateway.close(flush_timeout_s=2)


def statuses(found: list[tuple[str, CommandResponse]]) -> list[tuple[str, str]]:
    return [(r.status.value, r.reason) for _, r in found]


def logged(path: Path) -> tuple[dict[str, tuple[str, str, str]],
                                dict[str, list[tuple[str, str, int]]]]:
    """The command log: id -> (action, status, reason), and id -> every answer given."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = {i: (a, s, r) for i, a, s, r in db.execute(
            "SELECT id, action, status, reason FROM commands")}
        answers: dict[str, list[tuple[str, str, int]]] = {}
        for i, s, r, resent in db.execute(
                "SELECT id, status, reason, resent FROM answers ORDER BY seq"):
            answers.setdefault(i, []).append((s, r, resent))
        return rows, answers
    finally:
        db.close()


def test_the_gateway_validates_executes_answers_and_never_executes_twice(site: Site) -> None:
    control, battery, port = site.control, site.battery, site.battery_port
    reply_to = battery.topic(Channel.COMMAND_RESPONSE)
    with running(site.settings) as gateway:
        assert gateway.commands is not None
        assert gateway.commands.devices == [battery]

        charge = body("set_battery_kw", {"kw": -120.5})
        first = control.request(battery, charge)
        found = control.answers(first, 2)
        assert statuses(found) == [("accepted", ""), ("done", "")]
        assert {topic for topic, _ in found} == {reply_to}
        assert all(r.id == charge["id"] for _, r in found)
        # -120.5 kW at scale 0.1: -1205 in the int32 at register 10.
        assert read_value(port, BATTERY_KW, "int32", 2) == -1205

        too_much = body("set_battery_kw", {"kw": 600})
        refused = control.request(battery, too_much)
        rejection = control.answers(refused, 1)
        assert statuses(rejection) == [("rejected", "out-of-range")]
        assert "above the maximum 500" in rejection[0][1].detail

        # Someone changes the register locally: executing the first command again would
        # put -1205 back.
        write_raw(port, BATTERY_KW, [0, 7])
        repeated = control.request(battery, charge)
        # A later command, answered in full, is the barrier: an extra answer to the
        # duplicate or the rejection would have been published before its answers.
        start = control.request(battery, body("start"))
        assert statuses(control.answers(start, 2)) == [("accepted", ""), ("done", "")]
        again = control.answers(repeated, 0)
        assert [r for _, r in again] == [found[1][1]], "the stored answer, unchanged"
        assert len(control.answers(refused, 0)) == 1
        assert read_value(port, BATTERY_KW, "int32", 2) == 7
        assert read_value(port, RUN, "uint16", 1) == 1

    rows, answers = logged(site.settings.command_log_path)
    assert rows == {charge["id"]: ("set_battery_kw", "done", ""),
                    too_much["id"]: ("set_battery_kw", "rejected", "out-of-range"),
                    next(iter(set(rows) - {charge["id"], too_much["id"]})):
                        ("start", "done", "")}
    assert answers[str(charge["id"])] == [("accepted", "", 0), ("done", "", 0), ("done", "", 1)]
    assert answers[str(too_much["id"])] == [("rejected", "out-of-range", 0)]

    # Every request was acknowledged once answered: a gateway resuming the same broker
    # session gets none of them again, so the log gains no re-sent answers.
    with running(site.settings):
        stop = control.request(battery, body("stop"))
        assert statuses(control.answers(stop, 2)) == [("accepted", ""), ("done", "")]
    rows_after, answers_after = logged(site.settings.command_log_path)
    assert {i: a for i, a in answers_after.items() if i in answers} == answers
    assert len(rows_after) == len(rows) + 1
    assert read_value(port, RUN, "uint16", 1) == 0
    assert read_value(port, BATTERY_KW, "int32", 2) == 7


def test_a_bad_commands_file_stops_the_gateway_before_it_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    unmapped = tmp_path / "unmapped.yaml"
    unmapped.write_text(commands_yaml(502).replace(
        "      stop: {}\n    modbus", "      stop: {}\n      set_power_kw: {kw: {max: 5}}\n"
        "    modbus"))
    with pytest.raises(ConfigError, match="allows set_power_kw but no register is mapped"):
        load_command_devices(unmapped, "demo")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(commands_yaml(502).replace("      start: {}\n", "      launch: {}\n", 1))
    with pytest.raises(ConfigError, match="unknown actions"):
        load_command_devices(unknown, "demo")
    twice = tmp_path / "twice.yaml"
    twice.write_text(commands_yaml(502) + commands_yaml(502).removeprefix("devices:\n"))
    with pytest.raises(ConfigError, match="utilities/battery appears twice"):
        load_command_devices(twice, "demo")
    policies, targets = load_command_devices(
        Path(__file__).parents[2] / "edge" / "samples" / "gateway_commands.yaml", "demo")
    assert [d.device for d, _ in policies] == ["battery", "genset"] == [
        d.device for d in targets]

    meters = tmp_path / "meters.yaml"
    meters.write_text("meters:\n  - {facility: utilities, device: main, host: 127.0.0.1, "
                      "model: generic-three-phase}\n")
    monkeypatch.setenv("GATEWAY_COMMANDS_FILE", str(unmapped))
    monkeypatch.setenv("GATEWAY_OUTBOX_PATH", str(tmp_path / "outbox.sqlite3"))
    monkeypatch.setenv("GATEWAY_COMMAND_LOG_PATH", str(tmp_path / "edge_commands.sqlite"))
    with pytest.raises(SystemExit) as exited:
        gateway_command(meters)
    assert exited.value.code == 2
    assert "no register is mapped" in capsys.readouterr().err
    assert not (tmp_path / "outbox.sqlite3").exists(), "nothing starts on bad config"
    assert not (tmp_path / "edge_commands.sqlite").exists()
