"""A real pymodbus TCP server for the edge tests, in a thread of the test process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from launcher.servers import free_port


@contextmanager
def modbus_server(registers: list[int], unit_id: int) -> Iterator[int]:
    """A real pymodbus TCP server on a free loopback port, in a thread; yields the port."""
    port = free_port()
    device = SimDevice(id=unit_id, simdata=[SimData(address=0, values=registers,
                                                    datatype=DataType.REGISTERS)])
    loop = asyncio.new_event_loop()
    holder: dict[str, ModbusTcpServer] = {}
    started = threading.Event()

    async def serve() -> None:
        server = ModbusTcpServer(device, address=("127.0.0.1", port))
        holder["server"] = server
        await server.serve_forever(background=True)
        started.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(10), "modbus server did not start"
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(holder["server"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive(), "modbus server did not stop"
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
