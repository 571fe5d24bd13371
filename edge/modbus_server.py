"""Simulated meters served as real Modbus TCP servers, so the gateway polls real Modbus.

Each electrical meter of a simulation becomes a unit (unit id 1-247) of a pymodbus TCP
server, with holding registers laid out by a register map (``edge/maps``). Several servers
on consecutive ports hold more than 247 meters, as RS-485 gateways do on a real estate.

``update`` encodes the latest simulation step into one register image: each value is
converted from its canonical unit to the map's unit, divided by the map's scale, rounded,
saturated at the data type's range (as a meter's register saturates) and split into words
in the map's word order, the inverse of ``edge.modbus.decode``. The image is swapped in as
a whole, so a poll never sees half of a step. A meter that a fault holds offline answers
"gateway target did not respond", as a dead meter behind a gateway does. The servers run
on an asyncio loop in a thread of their own.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Final

import numpy as np
from numpy.typing import NDArray
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.meter_physics import ELECTRICAL_KINDS
from edge.modbus import ModbusMeter, plan_blocks
from edge.registers import GENERIC_THREE_PHASE, MeterMap, Point, load_map
from edge.simulator import EstateSimulator, Snapshot
from estate.topics import DeviceId
from estate.units import QUANTITIES, UNITS

log = logging.getLogger(__name__)

MAX_UNITS: Final = 247  # unit ids 1-247: the Modbus address space of one line

_RANGES: Final = {"uint16": (0, 2**16 - 1), "int16": (-(2**15), 2**15 - 1),
                  "uint32": (0, 2**32 - 1), "int32": (-(2**31), 2**31 - 1),
                  "uint64": (0, 2**63 - 1), "int64": (-(2**63), 2**63 - 1)}


def to_map_unit(values: NDArray[np.float64], point: Point) -> NDArray[np.float64]:
    """Canonical values of ``point``'s quantity in the point's own unit."""
    canonical = UNITS[QUANTITIES[point.quantity].unit]
    unit = UNITS[point.unit]
    base = values * canonical.scale + canonical.offset
    return (base - unit.offset) / unit.scale


def encode(point: Point, values: NDArray[np.float64]) -> NDArray[np.uint16]:
    """The registers of ``values`` (canonical units), one row per value: decode's inverse."""
    raw = to_map_unit(np.asarray(values, dtype=np.float64), point) / point.scale
    words = point.words
    if point.type == "float32":
        bits = raw.astype(">f4").view(">u4").astype(np.uint64)
    else:
        low, high = _RANGES[point.type]
        integers = np.clip(np.rint(raw), low, high).astype(np.int64)
        bits = integers.view(np.uint64) & np.uint64((1 << (16 * words)) - 1)
    shifts = np.array([16 * (words - 1 - k) for k in range(words)], dtype=np.uint64)
    out = ((bits[:, None] >> shifts[None, :]) & np.uint64(0xFFFF)).astype(np.uint16)
    return out[:, ::-1] if point.word_order == "little" else out


@dataclass(frozen=True, slots=True)
class ServedMeter:
    device: DeviceId
    server: int  # index of the server (port) in ``SimulatedModbusServers.ports``
    unit_id: int


class SimulatedModbusServers:
    """The electrical meters of a simulation behind Modbus TCP servers on consecutive ports.

    Servers listen on ``port``, ``port + 1``... ; ``port=0`` lets each take any free port,
    and ``ports`` says which once started.
    """

    def __init__(self, simulator: EstateSimulator, *, meter_map: MeterMap | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 devices: Sequence[DeviceId] | None = None,
                 units_per_server: int = MAX_UNITS) -> None:
        if not 1 <= units_per_server <= MAX_UNITS:
            raise ValueError(f"units per server must be 1-{MAX_UNITS}")
        self.simulator = simulator
        self.meter_map = meter_map or load_map(GENERIC_THREE_PHASE)
        self.host = host
        self._first_port = port
        chosen = list(devices) if devices is not None else [
            d for d in simulator.devices if simulator.locate(d)[0] in ELECTRICAL_KINDS]
        for device in chosen:
            if simulator.locate(device)[0] not in ELECTRICAL_KINDS:
                raise ValueError(f"{device} is not an electrical meter; the register map "
                                 f"{self.meter_map.model} describes one")
        self.served = [ServedMeter(d, k // units_per_server, k % units_per_server + 1)
                       for k, d in enumerate(chosen)]
        self._servers_needed = -(-len(chosen) // units_per_server) if chosen else 0
        self._span = max(p.end for p in self.meter_map.points)
        self._rows: dict[str, tuple[NDArray[np.intp], NDArray[np.intp]]] = {}
        by_kind: dict[str, list[tuple[int, int]]] = {}
        for row, device in enumerate(chosen):
            kind, j = simulator.locate(device)
            by_kind.setdefault(kind, []).append((row, j))
        for kind, pairs in by_kind.items():
            self._rows[kind] = (np.array([p[0] for p in pairs], dtype=np.intp),
                                np.array([p[1] for p in pairs], dtype=np.intp))
        self._image: NDArray[np.uint16] = np.zeros((len(chosen), self._span), dtype=np.uint16)
        self._offline: frozenset[int] = frozenset()
        self._row_of = {(m.server, m.unit_id): row for row, m in enumerate(self.served)}
        # Known before start when the first port is given: a gateway elsewhere can be
        # configured from the same estate and port without asking.
        self.ports: list[int] = ([port + k for k in range(self._servers_needed)] if port
                                 else [])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[ModbusTcpServer] = []

    @property
    def meters(self) -> list[ModbusMeter]:
        """What a ``ModbusGateway`` needs to poll the served meters (after ``start``)."""
        return [ModbusMeter(m.device, self.host, self.ports[m.server], m.unit_id,
                            self.meter_map) for m in self.served]

    def update(self, snapshot: Snapshot | None = None) -> None:
        """Show ``snapshot`` (by default the simulator's latest step) in the registers."""
        snapshot = snapshot or self.simulator.snapshot
        if snapshot is None:
            return
        image = np.zeros_like(self._image)
        for point in self.meter_map.points:
            values = np.zeros(len(self.served))
            for kind, (rows, js) in self._rows.items():
                values[rows] = snapshot.values[kind][(point.quantity, point.channel)][js]
            image[:, point.address:point.end] = encode(point, values)
        faults = self.simulator.faults
        self._offline = frozenset(
            row for row, m in enumerate(self.served)
            if faults and faults.offline(m.device, snapshot.time_ms))
        self._image = image

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the servers (an asyncio loop in a thread) and wait until they listen."""
        self.update()
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            for index in range(self._servers_needed):
                port = self._first_port + index if self._first_port else 0
                server = ModbusTcpServer(self._devices(index), address=(self.host, port))
                await server.serve_forever(background=True)
                self._servers.append(server)
                if not self._first_port:
                    sockets: list[socket.socket] = list(getattr(server.transport, "sockets", ()))
                    self.ports.append(sockets[0].getsockname()[1])

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # handed to the starting thread, which raises it
                for server in self._servers:
                    loop.run_until_complete(server.shutdown())  # type: ignore[no-untyped-call]
                self._servers = []
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=main, name="modbus-servers", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError("the Modbus servers did not start in time")
        if failure:
            self._thread.join(timeout_s)
            loop.close()
            raise RuntimeError(f"the Modbus servers did not start: {failure[0]}") from failure[0]
        log.info("serving %d meters on %s ports %s", len(self.served), self.host, self.ports)

    def _devices(self, index: int) -> list[SimDevice]:
        devices = []
        for meter in self.served:
            if meter.server != index:
                continue
            row = self._row_of[(index, meter.unit_id)]
            blocks = [SimData(address=b.address, values=[0] * b.count,
                              datatype=DataType.REGISTERS, readonly=True)
                      for b in plan_blocks(self.meter_map)]
            devices.append(SimDevice(id=meter.unit_id, simdata=blocks,
                                     action=partial(self._answer, row)))
        return devices

    async def _answer(self, row: int, _function_code: int, start_address: int, address: int,
                      count: int, registers: list[int], _values: object) -> ExcCodes | None:
        """Fill the requested registers from the current image just before pymodbus reads them."""
        if row in self._offline:
            return ExcCodes.GATEWAY_NO_RESPONSE
        offset = address - start_address
        registers[offset:offset + count] = self._image[row, address:address + count].tolist()
        return None

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for server in self._servers:
                await server.shutdown()  # type: ignore[no-untyped-call]

        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout_s)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._loop = self._thread = None
        self._servers = []

    def __enter__(self) -> SimulatedModbusServers:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
