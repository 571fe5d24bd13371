"""The live feed's fan-out, ticked by hand: each tick's changes are encoded once per scope
and shared by every stream; a stream that stops reading is dropped, told so, and holds no
more than its queue."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import orjson

from dispatch.web.live import LiveState
from dispatch.web.live_fanout import QUEUE_DEPTH, LiveFanout
from estate.ports import InboundMessage
from estate.readings import Reading
from estate.senml import encode_readings
from estate.topics import Channel, DeviceId

ESTATE = "demo"
# Ticks come from the test: the fanout's own ticker waits an hour.
BY_HAND = 3600.0


def _data(item: tuple[str, bytes]) -> dict:
    """The JSON of a queued server-sent event."""
    event, frame = item
    lines = frame.decode().splitlines()
    assert lines[0] == f"event: {event}"
    return orjson.loads(next(x for x in lines if x.startswith("data: "))[6:])


def _feed(live: LiveState, facility: str, device: str, value: float) -> None:
    ident = DeviceId(ESTATE, facility, device)
    payload = encode_readings(ident, [Reading(ESTATE, facility, device, "power", "", value,
                                              time.time_ns() // 1_000_000)])
    live.handle(InboundMessage(ident.topic(Channel.TELEMETRY), payload, 0, False, 0))


def test_streams_share_one_encoded_delta_per_scope() -> None:
    live = LiveState(ESTATE)
    _feed(live, "textile", "main", 1.0)

    async def run() -> None:
        fanout = LiveFanout(live, period_s=BY_HAND)
        first, second = fanout.subscribe(None), fanout.subscribe(None)
        tenant = fanout.subscribe("textile")
        snapshot = first.queue.get_nowait()
        assert snapshot[1] is second.queue.get_nowait()[1]  # one full snapshot for both
        assert [v["value"] for v in _data(snapshot)["values"]] == [1.0]
        tenant.queue.get_nowait()
        before = fanout.counts.encoded
        _feed(live, "textile", "main", 2.0)
        _feed(live, "foods", "main", 3.0)
        fanout.tick()
        delta = first.queue.get_nowait()
        assert delta[1] is second.queue.get_nowait()[1]  # the same object, encoded once
        body = _data(delta)
        assert sorted((v["facility"], v["value"]) for v in body["values"]) == [
            ("foods", 3.0), ("textile", 2.0)]
        own = _data(tenant.queue.get_nowait())
        assert [(v["facility"], v["value"]) for v in own["values"]] == [("textile", 2.0)]
        assert fanout.counts.encoded - before == 2  # the estate's and the tenant's
        # Nothing changed: nothing is sent; a change elsewhere is not the tenant's.
        fanout.tick()
        _feed(live, "foods", "main", 4.0)
        fanout.tick()
        assert first.queue.qsize() == 1
        assert tenant.queue.empty()

    asyncio.run(run())


TICKS = 1000


def test_a_stream_that_stops_reading_is_dropped_and_told_without_growing() -> None:
    live = LiveState(ESTATE)

    async def run() -> None:
        fanout = LiveFanout(live, period_s=BY_HAND)
        stuck, reader = fanout.subscribe(None), fanout.subscribe(None)
        received = 0
        tracemalloc.start()
        try:
            for tick in range(TICKS):
                for device in range(20):  # a few KB of changes a tick
                    _feed(live, "textile", f"m{device}", float(tick))
                fanout.tick()
                while not reader.queue.empty():
                    reader.queue.get_nowait()
                    received += 1
                if tick == 100:
                    settled, _ = tracemalloc.get_traced_memory()
            grown = tracemalloc.get_traced_memory()[0] - settled
        finally:
            tracemalloc.stop()
        assert stuck.dropped
        assert not reader.dropped
        assert received == TICKS + 1  # the snapshot and every tick's delta
        assert stuck.queue.qsize() == 1
        dropped = stuck.queue.get_nowait()
        assert dropped[0] == "dropped"
        assert b"retry: 2000" in dropped[1]
        assert "reconnect" in _data(dropped)["reason"]
        assert fanout.streams == 1
        assert fanout.counts.dropped == 1
        # 900 more ticks of deltas (a few MB) went by the stuck stream without staying.
        assert grown < 256 * 1024, f"memory grew by {grown} bytes"
        assert QUEUE_DEPTH <= 16

    asyncio.run(run())


def test_the_ticker_runs_while_a_stream_is_open() -> None:
    live = LiveState(ESTATE)

    async def run() -> None:
        fanout = LiveFanout(live, period_s=0.01)
        subscriber = fanout.subscribe(None)
        await subscriber.queue.get()
        _feed(live, "textile", "main", 5.0)
        item = await asyncio.wait_for(subscriber.queue.get(), 5)
        assert _data(item)["values"][0]["value"] == 5.0
        fanout.unsubscribe(subscriber)

    asyncio.run(run())
