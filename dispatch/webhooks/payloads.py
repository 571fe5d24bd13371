"""Which subscription wants which event, and the body it gets.

A subscription's filter (``event_filter``) has optional lists: ``types`` (event types, or
a family as ``alarm.*``), ``severities`` and ``facilities``; an empty or missing list lets
everything through. A tenant's subscription (one with a facility) gets only the events
of its own facility, whatever its filter. Nobody gets the ``webhook.dead`` events of
their own deliveries, nor the alarms about them (they could not be delivered either).

Bodies: ``cloudevents``, a CloudEvents 1.0 event in JSON (structured mode,
``application/cloudevents+json``), its ``id`` the delivery's ``webhook-id``; ``chat``,
``{"text": "..."}``, which Slack, Mattermost, Rocket.Chat and Google Chat accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from dispatch.registry.outbox import EVENT_TYPES, OutboxEvent
from dispatch.registry.webhook_store import Subscription
from estate.alarm_rules import SEVERITIES

FILTER_KEYS: Final = ("types", "severities", "facilities")
TYPE_PREFIX: Final = "estate."
CLOUDEVENTS_CONTENT_TYPE: Final = "application/cloudevents+json"
# Chat lines stay short: chat services cut or refuse long messages.
MAX_CHAT_TEXT: Final = 500
_FORMAT: Final = JSONFormat()


def check_filter(raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """A filter as stored, or ``ValueError`` saying what is wrong with it."""
    unknown = set(raw) - set(FILTER_KEYS)
    if unknown:
        raise ValueError(f"unknown filter keys {sorted(unknown)}: use {', '.join(FILTER_KEYS)}")
    clean: dict[str, list[str]] = {}
    for key in FILTER_KEYS:
        values = raw.get(key) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"filter {key}: a list of strings")
        clean[key] = list(dict.fromkeys(values))
    families = {t.split(".", 1)[0] for t in EVENT_TYPES}
    for kind in clean["types"]:
        if kind not in EVENT_TYPES and not (kind.endswith(".*") and kind[:-2] in families):
            raise ValueError(f"unknown event type {kind!r}: one of {', '.join(EVENT_TYPES)} "
                             f"or a family ({', '.join(sorted(f + '.*' for f in families))})")
    for severity in clean["severities"]:
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}: one of {', '.join(SEVERITIES)}")
    return clean


def facility_of(event: OutboxEvent) -> str | None:
    """The facility an event concerns, if one: its own field, or its alarm's source
    (``facility/meter`` or ``facility:<id>``)."""
    facility = event.payload.get("facility")
    if isinstance(facility, str) and facility:
        return facility
    source = event.payload.get("source")
    if isinstance(source, str):
        if source.startswith("facility:"):
            return source.split(":", 1)[1] or None
        if "/" in source:
            return source.split("/", 1)[0] or None
    return None


def _type_wanted(kind: str, wanted: Sequence[str]) -> bool:
    return not wanted or kind in wanted or f"{kind.split('.', 1)[0]}.*" in wanted


def wants(subscription: Subscription, event: OutboxEvent) -> bool:
    """Whether ``subscription`` gets ``event``."""
    if event.estate != subscription.estate:
        return False
    if ((event.payload.get("subscription_id") == subscription.id and event.type == "webhook.dead")
            or event.payload.get("source") == f"webhook:{subscription.id}"):
        return False  # news of its own failure: it could not be delivered either
    facility = facility_of(event)
    if subscription.facility is not None and facility != subscription.facility:
        return False
    f = subscription.event_filter
    if not _type_wanted(event.type, f.get("types") or []):
        return False
    severities = f.get("severities") or []
    if severities and event.payload.get("severity") not in severities:
        return False
    facilities = f.get("facilities") or []
    return not facilities or facility in facilities


def route(event: OutboxEvent, subscriptions: Sequence[Subscription]) -> list[int]:
    """The subscriptions (enabled ones of the event's estate) that get ``event``."""
    return [s.id for s in subscriptions if wants(s, event)]


def cloudevent(event: OutboxEvent, message_id: str) -> bytes:
    """The event as a CloudEvents 1.0 JSON document."""
    return _FORMAT.write(CloudEvent({
        "id": message_id, "source": f"/estates/{event.estate}",
        "type": TYPE_PREFIX + event.type, "subject": f"{event.subject_type}/{event.subject_id}",
        "time": event.created_at, "datacontenttype": "application/json",
        "sequence": str(event.id)}, event.payload))


def chat_text(event: OutboxEvent) -> str:
    """One line for a chat room."""
    p = event.payload
    severity = f"[{p['severity']}] " if isinstance(p.get("severity"), str) else ""
    what = event.type.replace(".", " ").replace("_", " ")
    detail = next((str(p[k]) for k in ("message", "title", "reason", "error")
                   if p.get(k)), "")
    where = " ".join(x for x in (event.estate, facility_of(event) and
                                 f"facility {facility_of(event)}") if x)
    line = f"{severity}{what} ({event.subject_type} {event.subject_id}, {where})"
    return (f"{line}: {detail}" if detail else line)[:MAX_CHAT_TEXT]


def render(event: OutboxEvent, payload_format: str, message_id: str) -> tuple[bytes, str]:
    """The body and its content type."""
    if payload_format == "chat":
        return orjson.dumps({"text": chat_text(event)}), "application/json"
    return cloudevent(event, message_id), CLOUDEVENTS_CONTENT_TYPE
