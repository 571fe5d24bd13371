"""What the web view depends on, as ``/api/health`` reports it: the store, the broker and,
where the view is given the supervisor's status (the demo's ``var/supervisor.json`` or
its ``/status``), each supervised service.

Many pages poll the health every few seconds, so the store's ping is cached for
``STORE_PING_TTL_S`` and the supervisor's status for ``SUPERVISOR_TTL_S``: whatever the
number of pages, the store sees one ping per interval. The supervisor's document is read
within bounds (its size, the number of services, every string cut), and a status that
cannot be read is reported with the reason, never raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import httpx
import orjson

from estate.bounded import cut
from estate.errors import StoreError
from estate.ports import TimeSeriesStore

# Two seconds: a page polls every few, so a change is still shown within one poll, and a
# hundred pages cost the store one ping every two seconds instead of fifty a second.
STORE_PING_TTL_S: Final = 2.0
# The supervisor rewrites its status on every change; reading it once a second keeps a
# restart on the page within a poll and the file (or endpoint) read at most once a second.
SUPERVISOR_TTL_S: Final = 1.0
# The demo's status is about 2 KB for six children; 256 KiB is room for far more and caps
# what one read costs whatever the file holds.
MAX_STATUS_BYTES: Final = 256 * 1024
# A supervisor runs a handful of children; more than this is not a status we repeat.
MAX_SERVICES: Final = 32
# The supervisor's endpoint is on the same host: it answers in milliseconds or not at all,
# and a health answer must not wait for it.
SUPERVISOR_TIMEOUT_S: Final = 1.0
# A service's name and its last exit, cut to these bounds before they are repeated.
NAME_CHARS: Final = 64
EXIT_CHARS: Final = 120

T = TypeVar("T")


class StatusUnreadable(Exception):
    """The supervisor's status could not be read or understood; the message says why."""


class Cached(Generic[T]):
    """The value ``compute`` returned, kept for ``ttl_s``; one caller computes at a time."""

    def __init__(self, compute: Callable[[], T], ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._compute = compute
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at: float | None = None

    def get(self) -> T:
        with self._lock:
            now = self._clock()
            if self._value is None or self._at is None or now - self._at >= self._ttl_s:
                self._value = self._compute()
                self._at = self._clock()
            return self._value


def read_supervisor_status(source: str) -> Any:
    """The supervisor's JSON document from a file path or an ``http(s)://`` URL."""
    if source.startswith(("http://", "https://")):
        data = _fetch(source)
    else:
        try:
            with Path(source).open("rb") as file:
                data = file.read(MAX_STATUS_BYTES + 1)
        except OSError as exc:
            raise StatusUnreadable(f"supervisor status unreadable: {exc.strerror}") from exc
    if len(data) > MAX_STATUS_BYTES:
        raise StatusUnreadable(f"supervisor status over {MAX_STATUS_BYTES} bytes")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StatusUnreadable("supervisor status is not JSON") from exc


def _fetch(url: str) -> bytes:
    """At most ``MAX_STATUS_BYTES`` + 1 bytes of ``url``'s answer."""
    data = b""
    try:
        with httpx.stream("GET", url, timeout=SUPERVISOR_TIMEOUT_S) as answer:
            if answer.status_code not in (200, 503):  # /health: 503 with the same document
                raise StatusUnreadable(f"supervisor status answered {answer.status_code}")
            for chunk in answer.iter_bytes():
                data += chunk
                if len(data) > MAX_STATUS_BYTES:
                    break
    except httpx.HTTPError as exc:
        raise StatusUnreadable(f"supervisor status unreachable: {cut(str(exc))}") from exc
    return data


def _ms(value: Any) -> int | None:
    return round(value * 1000) if isinstance(value, int | float) else None


def service_state(child: dict[str, Any]) -> str:
    """running, restarting (died, waiting for or in its restart), starting or stopped."""
    state = child.get("state")
    if state == "down" or (state == "starting" and child.get("last_exit")):
        return "restarting"
    return state if state in ("running", "starting", "stopped") else "unknown"


def services_from_status(document: Any) -> list[dict[str, Any]]:
    """Each supervised service's state, restarts and last exit, from the supervisor's
    document (``launcher.supervisor``); times in ms since the epoch."""
    children = document.get("children") if isinstance(document, dict) else None
    if not isinstance(children, list):
        raise StatusUnreadable("supervisor status has no list of children")
    services = []
    for child in children[:MAX_SERVICES]:
        if not isinstance(child, dict) or not isinstance(child.get("name"), str):
            raise StatusUnreadable("supervisor status has a child without a name")
        restarts = child.get("restarts")
        last_exit = child.get("last_exit")
        services.append({
            "name": cut(child["name"], NAME_CHARS),
            "state": service_state(child),
            "restarts": restarts if isinstance(restarts, int) else 0,
            "last_exit": cut(last_exit, EXIT_CHARS) if isinstance(last_exit, str) else None,
            "last_exit_ms": _ms(child.get("last_exit_at")),
            "since_ms": _ms(child.get("since")),
            "restart_ms": _ms(child.get("restart_at")),
        })
    return services


class HealthProbe:
    """The store's ping, the broker connection and the supervised services, cheap to ask."""

    def __init__(self, store: TimeSeriesStore, mqtt_connected: Callable[[], bool],
                 supervisor_status: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._mqtt_connected = mqtt_connected
        self._supervisor_status = supervisor_status
        self._store = Cached(lambda: _ping(store), STORE_PING_TTL_S, clock)
        self._services = Cached(self._read_services, SUPERVISOR_TTL_S, clock)

    def _read_services(self) -> dict[str, Any]:
        assert self._supervisor_status is not None
        try:
            services = services_from_status(read_supervisor_status(self._supervisor_status))
        except StatusUnreadable as exc:
            return {"ok": False, "error": str(exc), "services": []}
        return {"ok": all(s["state"] == "running" for s in services), "services": services}

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(store and broker both up, the health document). The supervised services are
        reported, but only the store and the broker decide whether this view can serve."""
        store = self._store.get()
        connected = bool(self._mqtt_connected())
        ok = store["ok"] and connected
        body: dict[str, Any] = {"status": "ok" if ok else "degraded", "influxdb": store,
                                "mqtt": {"ok": connected}}
        if self._supervisor_status is not None:
            body["supervisor"] = self._services.get()
        return ok, body


def _ping(store: TimeSeriesStore) -> dict[str, Any]:
    try:
        return {"ok": True, "version": store.ping()}
    except StoreError as exc:
        return {"ok": False, "error": cut(str(exc), 300)}
