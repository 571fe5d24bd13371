"""The live values: a snapshot, and a stream of changes (server-sent events) fed by the
view's one ``LiveFanout``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse

from dispatch.web.auth import StreamSlot, StreamViewer, Viewer, facility_scope
from dispatch.web.deps import Live
from dispatch.web.live_fanout import DROPPED, LiveFanout

router = APIRouter()


def _fanout(request: Request) -> LiveFanout:
    return cast(LiveFanout, request.app.state.fanout)


Fanout = Annotated[LiveFanout, Depends(_fanout)]


@router.get("/api/live")
def live_snapshot(live: Live, identity: Viewer) -> dict[str, Any]:
    """The latest value of every meter quantity and every device's status (of the
    account's facility only, for an account bound to one)."""
    return live.snapshot(facility=facility_scope(identity, None))


@router.get("/api/live/stream", response_class=Response,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "server-sent events (docs/api.md)"}})
async def live_stream(fanout: Fanout, slot: StreamViewer) -> EventSourceResponse:
    """Server-sent events: ``live`` with the full state first, then what changed, at most
    four times a second; ``dropped`` (and the end of the stream) for a page that fell
    behind, which reconnects for a fresh snapshot. A session holds at most a few streams at
    once (429 beyond)."""
    return EventSourceResponse(_events(fanout, slot),
                               headers={"Cache-Control": "no-cache",
                                        "X-Accel-Buffering": "no"})


async def _events(fanout: LiveFanout, slot: StreamSlot) -> AsyncIterator[bytes]:
    """The stream's bytes, as the fanout encoded them. The slot is taken (and the stream
    subscribed) when the response starts, so a stream that never starts holds neither."""
    slot.take()
    subscriber = fanout.subscribe(facility_scope(slot.identity, None))
    try:
        while True:
            event, data = await subscriber.queue.get()
            yield data
            if event == DROPPED:
                return
    finally:
        fanout.unsubscribe(subscriber)
        slot.release()
