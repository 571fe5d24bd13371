"""The live values: a snapshot, and a stream of changes (server-sent events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from dispatch.web.auth import StreamViewer, Viewer, facility_scope
from dispatch.web.deps import Live

# The live stream pushes changes at most this often; meters report every few seconds.
STREAM_PERIOD_S: Final = 1.0

router = APIRouter()


@router.get("/api/live")
def live_snapshot(live: Live, identity: Viewer) -> dict[str, Any]:
    """The latest value of every meter quantity and every device's status (of the
    account's facility only, for an account bound to one)."""
    return live.snapshot(facility=facility_scope(identity, None))


@router.get("/api/live/stream", response_class=EventSourceResponse)
async def live_stream(live: Live, slot: StreamViewer) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: the full state first, then what changed, once a second. A
    session holds at most a few streams at once (429 beyond)."""
    slot.take()
    try:
        facility = facility_scope(slot.identity, None)
        seen = 0
        while True:
            if live.version != seen or seen == 0:
                snapshot = live.snapshot(seen, facility)
                seen = snapshot["version"]
                yield ServerSentEvent(data=snapshot, event="live")
            await asyncio.sleep(STREAM_PERIOD_S)
    finally:
        slot.release()
