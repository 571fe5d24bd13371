"""Polling Modbus TCP meters and publishing their values as SenML readings.

``poll`` reads one meter through its register map, grouping adjacent points into one
request; ``ModbusGateway`` polls a list of meters in passes and hands each meter's
readings to the ``Publisher``. A meter that cannot be reached or answers with an error is
logged and skipped for that pass; the others are published as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge.publisher import Publisher
from edge.registers import MeterMap, Point
from estate.errors import DeviceError
from estate.readings import Reading
from estate.topics import DeviceId
from estate.units import QUANTITIES, convert

log = logging.getLogger(__name__)

MAX_BLOCK: Final = 125  # registers one "read holding registers" request may return

_DATATYPES: Final = {
    "uint16": ModbusTcpClient.DATATYPE.UINT16,
    "int16": ModbusTcpClient.DATATYPE.INT16,
    "uint32": ModbusTcpClient.DATATYPE.UINT32,
    "int32": ModbusTcpClient.DATATYPE.INT32,
    "float32": ModbusTcpClient.DATATYPE.FLOAT32,
    "uint64": ModbusTcpClient.DATATYPE.UINT64,
    "int64": ModbusTcpClient.DATATYPE.INT64,
}

PolledValue = tuple[str, str, float, str]
"""(quantity, channel, value, unit): a point's value in the unit of its map."""


class PollError(DeviceError):
    """A meter answered with a Modbus exception or an unusable response."""


@dataclass(frozen=True, slots=True)
class Block:
    """Adjacent points read with one request."""

    address: int
    count: int
    points: tuple[Point, ...]


def plan_blocks(meter_map: MeterMap, max_block: int = MAX_BLOCK) -> list[Block]:
    """Group points whose registers follow each other without a gap into requests."""
    blocks: list[Block] = []
    current: list[Point] = []
    for point in sorted(meter_map.points, key=lambda p: p.address):
        if current and (point.address != current[-1].end
                        or point.end - current[0].address > max_block):
            blocks.append(_block(current))
            current = []
        current.append(point)
    if current:
        blocks.append(_block(current))
    return blocks


def _block(points: list[Point]) -> Block:
    return Block(points[0].address, points[-1].end - points[0].address, tuple(points))


def decode(point: Point, registers: Sequence[int]) -> float:
    """The value of ``point`` from its registers: decoded per type and word order, scaled."""
    raw = ModbusTcpClient.convert_from_registers(
        list(registers), data_type=_DATATYPES[point.type], word_order=point.word_order)
    if not isinstance(raw, (int, float)):
        raise PollError(f"{point.quantity} at {point.address} decoded to {raw!r}")
    return float(raw) * point.scale


def poll(client: ModbusTcpClient, meter_map: MeterMap, unit_id: int) -> list[PolledValue]:
    """Read every point of ``meter_map`` from the meter at ``unit_id``.

    Raises ``ModbusException`` when the meter cannot be reached or times out, and
    ``PollError`` when it answers with an exception response.
    """
    values: list[PolledValue] = []
    for block in plan_blocks(meter_map):
        response = client.read_holding_registers(block.address, count=block.count,
                                                 device_id=unit_id)
        if response.isError():
            raise PollError(f"registers {block.address}-{block.address + block.count - 1} "
                            f"of unit {unit_id}: {response}")
        registers = list(response.registers)
        if len(registers) < block.count:
            raise PollError(f"asked for {block.count} registers at {block.address}, "
                            f"got {len(registers)}")
        for point in block.points:
            offset = point.address - block.address
            value = decode(point, registers[offset:offset + point.words])
            values.append((point.quantity, point.channel, value, point.unit))
    return values


@dataclass(frozen=True, slots=True)
class ModbusMeter:
    """A meter the gateway polls: its identity on MQTT and where it answers Modbus."""

    device: DeviceId
    host: str
    port: int
    unit_id: int
    meter_map: MeterMap


@dataclass
class ModbusGateway:
    """Polls Modbus meters and publishes their values through a ``Publisher``."""

    meters: list[ModbusMeter]
    publisher: Publisher
    timeout_s: float = 2.0
    retries: int = 0
    _clients: dict[DeviceId, ModbusTcpClient] = field(default_factory=dict, init=False)

    def _client(self, meter: ModbusMeter) -> ModbusTcpClient:
        client = self._clients.get(meter.device)
        if client is None:
            client = ModbusTcpClient(meter.host, port=meter.port, timeout=self.timeout_s,
                                     retries=self.retries)
            self._clients[meter.device] = client
        return client

    def read(self, meter: ModbusMeter, now_ms: int) -> list[Reading]:
        """One meter's readings in canonical units, stamped ``now_ms``.

        Raises ``ModbusException`` or ``PollError`` when the meter cannot be read."""
        client = self._client(meter)
        if not client.connect():  # type: ignore[no-untyped-call]
            raise PollError(f"cannot connect to {meter.host}:{meter.port}")
        device = meter.device
        return [Reading(device.estate, device.facility, device.device, quantity, channel,
                        convert(value, unit, QUANTITIES[quantity]), now_ms)
                for quantity, channel, value, unit in poll(client, meter.meter_map,
                                                           meter.unit_id)]

    def poll_once(self, now_ms: int) -> dict[DeviceId, list[Reading]]:
        """Poll every meter once and publish what was read; skip (and log) failed meters."""
        published: dict[DeviceId, list[Reading]] = {}
        for meter in self.meters:
            try:
                readings = self.read(meter, now_ms)
            except (ModbusException, PollError, OSError) as exc:
                log.warning("skipping %s (%s:%d unit %d) this pass: %s", meter.device,
                            meter.host, meter.port, meter.unit_id, exc)
                self._drop(meter.device)
                continue
            self.publisher.publish(meter.device, readings)
            published[meter.device] = readings
        return published

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Poll every ``interval_s``, aligned to the interval, until ``stop`` is set."""
        interval_ms = max(1, round(interval_s * 1000))
        while not stop.is_set():
            now_ms = time.time_ns() // 1_000_000
            tick = now_ms - now_ms % interval_ms
            self.poll_once(tick)
            stop.wait(max(0.0, (tick + interval_ms) / 1000 - time.time()))

    def _drop(self, device: DeviceId) -> None:
        client = self._clients.pop(device, None)
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close every Modbus connection."""
        for device in list(self._clients):
            self._drop(device)
