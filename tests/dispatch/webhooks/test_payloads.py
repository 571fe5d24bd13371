"""Which subscription gets which event, and the bodies: CloudEvents 1.0 as the reference
SDK reads it back, and chat text."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from dispatch.registry.outbox import OutboxEvent
from dispatch.registry.webhook_store import Subscription
from dispatch.webhooks.payloads import check_filter, facility_of, render, route, wants

AT = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def event(kind: str = "alarm.raised", id: int = 7, **payload: Any) -> OutboxEvent:
    body = {"type": kind, "estate": "sample", "at": AT.isoformat(), **payload}
    return OutboxEvent(id, "sample", kind, kind.split(".")[0], "17", f"k{id}", body, AT, 0)


def subscription(id: int = 1, facility: str | None = None, **f: list[str]) -> Subscription:
    return Subscription(id, "sample", facility, "s", "http://h/x", check_filter(f),
                        "cloudevents", True, AT, AT, None)


ALARM = event(severity="high", source="F01/M01", message="voltage above 253 V")


def test_an_empty_filter_takes_everything_of_its_estate() -> None:
    assert wants(subscription(), ALARM)
    assert not wants(subscription(), replace(ALARM, estate="other"))


@pytest.mark.parametrize(("f", "expected"), [
    ({"types": ["alarm.raised"]}, True), ({"types": ["alarm.*"]}, True),
    ({"types": ["incident.*"]}, False), ({"types": ["alarm.cleared"]}, False),
    ({"severities": ["critical", "high"]}, True), ({"severities": ["low"]}, False),
    ({"facilities": ["F01"]}, True), ({"facilities": ["F02"]}, False),
    ({"types": ["alarm.*"], "severities": ["high"], "facilities": ["F02"]}, False),
])
def test_filters(f: dict[str, list[str]], expected: bool) -> None:
    assert wants(subscription(**f), ALARM) is expected


def test_a_tenant_sees_its_own_facility_only() -> None:
    tenant = subscription(facility="F01")
    assert wants(tenant, ALARM)
    assert not wants(tenant, replace(ALARM, payload={**ALARM.payload, "source": "F02/M01"}))
    assert not wants(tenant, event("plan.ready"))  # estate-wide: not a tenant's
    # A tenant's filter cannot widen it.
    assert not wants(subscription(facility="F02", facilities=["F01"]), ALARM)


def test_the_facility_of_an_event() -> None:
    assert facility_of(ALARM) == "F01"
    assert facility_of(event(source="facility:F03")) == "F03"
    assert facility_of(event("command.refused", facility="F04")) == "F04"
    assert facility_of(event(source="estate")) is None


def test_a_dead_delivery_is_not_reported_to_its_own_receiver() -> None:
    dead = event("webhook.dead", subscription_id=1)
    assert route(dead, [subscription(1), subscription(2)]) == [2]
    alarm = event(source="webhook:1", severity="high")
    assert route(alarm, [subscription(1), subscription(2)]) == [2]


@pytest.mark.parametrize("bad", [{"types": ["alarm.exploded"]}, {"severities": ["dire"]},
                                 {"colour": ["red"]}, {"types": "alarm.raised"}])
def test_bad_filters_are_refused_with_the_reason(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"unknown|list of strings"):
        check_filter(bad)


def test_cloudevents_body_reads_back_with_the_reference_sdk() -> None:
    body, content_type = render(ALARM, "cloudevents", "msg_abc")
    assert content_type == "application/cloudevents+json"
    back = JSONFormat().read(CloudEvent, body)
    assert back.get_id() == "msg_abc"
    assert back.get_specversion() == "1.0"
    assert back.get_type() == "estate.alarm.raised"
    assert back.get_source() == "/estates/sample"
    assert back.get_subject() == "alarm/17"
    assert back.get_time() == AT
    assert back.get_extension("sequence") == "7"
    assert back.get_data() == ALARM.payload


def test_chat_body_is_one_line_of_text() -> None:
    body, content_type = render(ALARM, "chat", "msg_abc")
    assert content_type == "application/json"
    assert orjson.loads(body) == {
        "text": "[high] alarm raised (alarm 17, sample facility F01): voltage above 253 V"}
    long = replace(ALARM, payload={**ALARM.payload, "message": "x" * 5000})
    assert len(orjson.loads(render(long, "chat", "m")[0])["text"]) == 500
