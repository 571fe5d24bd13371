"""A real openleadr VTN (``OpenADRServer``) on loopback, in a thread with its own event
loop, recording what the VEN tells it: registrations, opts, report values."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp.web_exceptions import NotAppKeyWarning
from openleadr import OpenADRServer

from launcher.servers import free_port

VEN_ID = "ven-estate-1"


@dataclass
class Vtn:
    server: OpenADRServer
    loop: asyncio.AbstractEventLoop
    url: str
    opts: list[tuple[str, str]] = field(default_factory=list)  # (event id, opt)
    reports: list[float] = field(default_factory=list)
    registered: threading.Event = field(default_factory=threading.Event)

    def event(self, signal_type: str, start: datetime, payloads: list[float]) -> str:
        """Send the VEN an event of quarter-hour intervals from ``start``."""
        intervals = [{"dtstart": start + timedelta(minutes=15 * i),
                      "duration": timedelta(minutes=15), "signal_payload": p}
                     for i, p in enumerate(payloads)]

        async def add() -> str:  # on the VTN's loop: openleadr's queues are not thread-safe
            return str(self.server.add_event(
                VEN_ID, "LOAD_DISPATCH", signal_type, intervals,
                callback=lambda ven_id, event_id, opt_type: self.opts.append(
                    (event_id, opt_type)),
                market_context="oadr://grid-operator/summer"))

        return asyncio.run_coroutine_threadsafe(add(), self.loop).result(10)

    def cancel(self, event_id: str) -> None:
        async def cancel() -> None:
            self.server.cancel_event(VEN_ID, event_id)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(10)

    def wait(self, condition: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"the VTN saw no {what} in {timeout_s} s"
            time.sleep(0.1)


@contextmanager
def running_vtn() -> Iterator[Vtn]:
    port = free_port()
    with warnings.catch_warnings():
        # openleadr's own aiohttp application uses string keys; aiohttp warns about that.
        warnings.simplefilter("ignore", NotAppKeyWarning)
        server = OpenADRServer(vtn_id="GRID-OPERATOR", http_host="127.0.0.1",
                               http_port=port, requested_poll_freq=timedelta(seconds=1),
                               show_fingerprint=False)
    loop = asyncio.new_event_loop()
    vtn = Vtn(server, loop, f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b")

    def register(payload: dict[str, Any]) -> tuple[str, str]:
        vtn.registered.set()
        return VEN_ID, "registration-1"

    def register_report(ven_id: str, resource_id: str, measurement: str, unit: str,
                        scale: str, min_sampling_interval: timedelta,
                        max_sampling_interval: timedelta) -> tuple[Any, timedelta]:
        def received(values: list[tuple[datetime, float]]) -> None:
            vtn.reports.extend(float(v) for _, v in values)
        return received, min_sampling_interval

    server.add_handler("on_create_party_registration", register)
    server.add_handler("on_register_report", register_report)
    server.add_handler("on_created_event", lambda ven_id, event_id, opt_type: vtn.opts.append(
        (event_id, opt_type)))

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.run())
        loop.run_forever()

    thread = threading.Thread(target=run, name="vtn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while True:  # ready once it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the VTN did not listen"
            time.sleep(0.05)
    try:
        yield vtn
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
