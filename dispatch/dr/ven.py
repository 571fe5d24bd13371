"""The estate's OpenADR 2.0b VEN (openleadr, the only module that imports it): registers
with the grid operator's VTN, turns each event it sends into an order, answers it with the
operator's standing decision, sends a new opt when the operator changes it, and reports
the estate's import back while the VTN asks for it.

The client runs on an asyncio loop in a thread of its own; ``start`` returns once it is
registered. Events the VEN understands have a ``LOAD_DISPATCH`` or ``LOAD_CONTROL``
signal with kW in its payload: of type ``setpoint``, ``x-loadControlCapacity`` or
``x-loadControlSetpoint``, a cap (import at most the payload); of type ``delta`` or
``x-loadControlLevelOffset``, a cut (the payload below baseline). An event the VTN
cancels cancels its order (``on_cancel``).

With several intervals, a cap takes the lowest payload and a cut the highest (the order is
one figure over the window). Anything else is answered ``optOut`` and logged with why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from openleadr import OpenADRClient

from dispatch.dr.orders import OrderDraft, Programme, check_draft
from dispatch.settings import DemandResponseSettings
from estate.errors import DemandResponseError

log = logging.getLogger(__name__)

CAP_TYPES: Final = frozenset({"setpoint", "x-loadControlCapacity", "x-loadControlSetpoint"})
CUT_TYPES: Final = frozenset({"delta", "x-loadControlLevelOffset"})
SIGNALS: Final = frozenset({"LOAD_DISPATCH", "LOAD_CONTROL"})
MAX_INTERVALS: Final = 96
"""A day of quarter-hours: an event with more intervals is refused unread."""
OrderHandler = Callable[[OrderDraft], str]
"""Stores a received order; answers the standing decision, ``in`` or ``out``."""
Telemetry = Callable[[], float | None]
"""The estate's import now (kW), None when unknown."""
CancelHandler = Callable[[str], None]
"""The VTN cancelled its event (by id): the order is cancelled."""


def parse_event(event: Mapping[str, Any], programme: Programme) -> OrderDraft:
    """An openleadr event as an order; ``DemandResponseError`` saying why not."""
    try:
        descriptor = event["event_descriptor"]
        signals = event["event_signals"]
        if isinstance(signals, Mapping):
            signals = signals["event_signals"]
        signal = signals[0]
        name, kind = str(signal["signal_name"]), str(signal["signal_type"])
        intervals = list(signal["intervals"])[:MAX_INTERVALS + 1]
    except (KeyError, IndexError, TypeError) as exc:
        raise DemandResponseError(f"event without a descriptor or signal: {exc!r}"[:200]) \
            from exc
    if name not in SIGNALS or kind not in CAP_TYPES | CUT_TYPES:
        raise DemandResponseError(f"signal {name[:40]}/{kind[:40]} is not a load signal")
    if not intervals or len(intervals) > MAX_INTERVALS:
        raise DemandResponseError(f"event with {len(intervals)} intervals (1-{MAX_INTERVALS})")
    try:
        starts = [i["dtstart"] for i in intervals]
        ends = [i["dtstart"] + i["duration"] for i in intervals]
        values = [float(i["signal_payload"]) for i in intervals]
    except (KeyError, TypeError, ValueError) as exc:
        raise DemandResponseError(f"event interval unreadable: {exc!r}"[:200]) from exc
    if not all(isinstance(t, datetime) for t in starts) or not all(map(math.isfinite, values)):
        raise DemandResponseError("event interval without a start time or a finite payload")
    cap = kind in CAP_TYPES
    draft = OrderDraft("cap" if cap else "cut", min(values) if cap else max(values),
                       min(starts), max(ends), programme, "openadr",
                       str(descriptor.get("event_id", ""))[:200] or None,
                       f"OpenADR {name}/{kind} from {str(descriptor.get('market_context'))[:100]}")
    return check_draft(draft)


class Ven:
    """The VEN; ``start`` it, ``send_opt`` when the operator decides, ``stop`` it."""

    def __init__(self, settings: DemandResponseSettings, on_order: OrderHandler,
                 telemetry: Telemetry, on_cancel: CancelHandler | None = None) -> None:
        if not settings.vtn_url:
            raise DemandResponseError("no VTN URL: set DISPATCH_DEMAND_RESPONSE__VTN_URL")
        self._settings = settings
        self._on_order = on_order
        self._on_cancel = on_cancel
        self._telemetry = telemetry
        self._programme = Programme(settings.programme, settings.payment_per_kwh,
                                    settings.penalty_per_kwh, settings.currency)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="openadr-ven", daemon=True)
        self._ready = threading.Event()
        self._client = OpenADRClient(
            ven_name=settings.ven_name, vtn_url=settings.vtn_url, ven_id=settings.ven_id,
            cert=_path(settings.cert_file), key=_path(settings.key_file),
            ca_file=_path(settings.ca_file), vtn_fingerprint=settings.vtn_fingerprint,
            show_fingerprint=False, disable_signature=settings.cert_file is None)
        self._client.add_handler("on_event", self._event)
        self._client.add_handler("on_update_event", self._event)
        self._client.add_report(callback=self._report, resource_id="estate-import",
                                measurement="power_real", unit="W", scale="k",
                                sampling_rate=timedelta(seconds=settings.report_interval_s),
                                report_duration=timedelta(hours=24))

    @property
    def ven_id(self) -> str | None:
        return self._client.ven_id  # type: ignore[no-any-return]

    def start(self, timeout_s: float = 30.0) -> None:
        """Register with the VTN; ``DemandResponseError`` if that fails in time."""
        self._thread.start()
        if not self._ready.wait(timeout_s) or not self._client.registration_id:
            raise DemandResponseError(f"the VTN at {self._settings.vtn_url} did not register "
                                      f"this VEN within {timeout_s:g} s")
        log.info("OpenADR VEN %s registered with %s", self.ven_id, self._settings.vtn_url)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._client.run())
        except Exception:  # openleadr raises aiohttp's and its own errors: logged, not ready
            log.exception("the OpenADR VEN could not start")
        finally:
            self._ready.set()
        self._loop.run_forever()

    async def _event(self, event: dict[str, Any]) -> str:
        descriptor = event.get("event_descriptor") or {}
        if descriptor.get("event_status") == "cancelled" and self._on_cancel is not None:
            event_id = str(descriptor.get("event_id", ""))[:200]
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._on_cancel,
                                                                 event_id)
            except Exception:  # the registry away: logged; the VTN's next copy retries
                log.exception("cancellation of OpenADR event %s not stored", event_id)
            return "optOut"
        try:
            draft = parse_event(event, self._programme)
        except DemandResponseError as exc:
            log.warning("OpenADR event refused (opted out): %s", exc)
            return "optOut"
        loop = asyncio.get_running_loop()
        try:
            decision = await loop.run_in_executor(None, self._on_order, draft)
        except Exception:  # the registry being away must not stop the VEN: opt out, logged
            log.exception("OpenADR event %s not stored: opted out", draft.external_id)
            return "optOut"
        return "optIn" if decision == "in" else "optOut"

    def _report(self) -> float | None:
        value = self._telemetry()
        return None if value is None or not math.isfinite(value) else round(value, 3)

    def send_opt(self, event_id: str, opt: str, timeout_s: float = 10.0) -> None:
        """Tell the VTN the operator's decision on one of its events: a new
        ``oadrCreatedEvent`` answer for it (EiEvent; openleadr's VTN takes no EiOpt)."""
        if opt not in ("in", "out"):
            raise DemandResponseError(f"opt must be 'in' or 'out', not {opt[:20]!r}")
        known = [e for e in self._client.received_events
                 if e["event_descriptor"]["event_id"] == event_id]
        if not known:
            raise DemandResponseError(f"the VTN's event {event_id[:60]!r} is not known here")
        coroutine = self._client.created_event(
            request_id=f"opt-{event_id}"[:100], event_id=event_id,
            opt_type="optIn" if opt == "in" else "optOut",
            modification_number=known[-1]["event_descriptor"]["modification_number"])
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread.is_alive():
            if self._client.client_session is not None:
                asyncio.run_coroutine_threadsafe(self._client.stop(),
                                                 self._loop).result(timeout_s)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


def _path(path: Any) -> str | None:
    return None if path is None else str(path)
