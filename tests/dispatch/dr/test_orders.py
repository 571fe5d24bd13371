"""Orders are checked before they are stored; OpenADR events become orders or are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch.dr.orders import OrderDraft, Programme, check_draft
from dispatch.dr.ven import parse_event
from estate.errors import DemandResponseError

START = datetime(2026, 7, 15, 15, tzinfo=UTC)


@pytest.mark.parametrize(("changes", "why"), [
    ({"kind": "shed"}, "kind"),
    ({"kw": float("nan")}, "kW"),
    ({"kw": -5.0}, "kW"),
    ({"end": START}, "window"),
    ({"end": START + timedelta(days=2)}, "window"),
    ({"start": START + timedelta(minutes=7)}, "step"),
    ({"start": START.replace(tzinfo=None)}, "time zone"),
    ({"programme": Programme(payment_per_kwh=-1)}, "payment"),
])
def test_a_bad_order_is_refused_with_a_reason(changes: dict[str, Any], why: str) -> None:
    values: dict[str, Any] = {"kind": "cap", "kw": 1500.0, "start": START,
                              "end": START + timedelta(hours=2), "programme": Programme()}
    with pytest.raises(DemandResponseError, match=why):
        check_draft(OrderDraft(**(values | changes)))


def _event(signal_type: str, payloads: list[float], name: str = "LOAD_DISPATCH") -> dict[str,
                                                                                         Any]:
    return {"event_descriptor": {"event_id": "ev-1", "market_context": "oadr://summer"},
            "event_signals": [{"signal_name": name, "signal_type": signal_type,
                               "intervals": [{"dtstart": START + timedelta(minutes=15 * i),
                                              "duration": timedelta(minutes=15),
                                              "signal_payload": p}
                                             for i, p in enumerate(payloads)]}]}


def test_openadr_events_become_caps_or_cuts() -> None:
    programme = Programme("summer", 0.3, 0.5)
    cap = parse_event(_event("x-loadControlCapacity", [1800, 1700, 1750]), programme)
    assert (cap.kind, cap.kw, cap.source, cap.external_id) == ("cap", 1700, "openadr", "ev-1")
    assert cap.end - cap.start == timedelta(minutes=45)
    cut = parse_event(_event("delta", [200, 300]), programme)
    assert (cut.kind, cut.kw) == ("cut", 300)


@pytest.mark.parametrize("event", [
    {},
    _event("price", [0.2], name="ELECTRICITY_PRICE"),
    _event("setpoint", []),
    _event("setpoint", [float("inf")]),
    _event("setpoint", [100.0] * 200),
])
def test_events_the_ven_cannot_use_are_refused(event: dict[str, Any]) -> None:
    with pytest.raises(DemandResponseError):
        parse_event(event, Programme())
