"""The live values: a snapshot, and a stream of changes (server-sent events) fed by the
view's one ``LiveFanout``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, cast

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from dispatch.web.auth import StreamViewer, Viewer, facility_scope
from dispatch.web.deps import Live
from dispatch.web.live_fanout import LiveFanout

# After a ``dropped`` event a page's EventSource reconnects this many ms later: soon, but
# not at once, so a page that fell behind does not hammer the view.
RECONNECT_MS: Final = 2000

router = APIRouter()


def _fanout(request: Request) -> LiveFanout:
    return cast(LiveFanout, request.app.state.fanout)


Fanout = Annotated[LiveFanout, Depends(_fanout)]


@router.get("/api/live")
def live_snapshot(live: Live, identity: Viewer) -> dict[str, Any]:
    """The latest value of every meter quantity and every device's status (of the
    account's facility only, for an account bound to one)."""
    return live.snapshot(facility=facility_scope(identity, None))


@router.get("/api/live/stream", response_class=EventSourceResponse)
async def live_stream(fanout: Fanout, slot: StreamViewer) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: ``live`` with the full state first, then what changed, at most
    four times a second; ``dropped`` (and the end of the stream) for a page that fell
    behind, which reconnects for a fresh snapshot. A session holds at most a few streams at
    once (429 beyond)."""
    slot.take()
    subscriber = fanout.subscribe(facility_scope(slot.identity, None))
    try:
        while True:
            event, data = await subscriber.queue.get()
            if event == "dropped":
                yield ServerSentEvent(raw_data=data, event=event, retry=RECONNECT_MS)
                return
            yield ServerSentEvent(raw_data=data, event=event)
    finally:
        fanout.unsubscribe(subscriber)
        slot.release()
