"""Webhook subscriptions in the registry: add, list, enable or disable, rotate a secret,
and the delivery log (deliveries and their attempts), redelivery by hand.

Records handed out carry no secret: only ``signing_keys`` reads them, for the deliverer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select

from dispatch.registry.control_room import OutboxEventRow
from dispatch.registry.db import Registry
from dispatch.registry.models import EstateRow, FacilityRow
from dispatch.registry.outbox import RecordNotFound
from dispatch.registry.webhook_tables import (
    PAYLOAD_FORMATS,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)

# The delivery log lists at most this many rows per call.
MAX_LOG_ROWS: Final = 1000


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as operators see it: never its secrets."""

    id: int
    estate: str
    facility: str | None
    name: str
    url: str
    event_filter: dict[str, Any]
    payload_format: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    previous_secret_until: datetime | None


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The secrets a delivery is signed with: the current one, and the previous one while
    it is still valid. Its ``repr`` shows neither."""

    current: str
    previous: str | None

    def __repr__(self) -> str:
        return f"SigningKeys(<{1 + (self.previous is not None)} hidden>)"

    def valid(self) -> tuple[str, ...]:
        return (self.current,) if self.previous is None else (self.current, self.previous)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    subscription_id: int
    event_id: int
    event_type: str
    message_id: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    delivery_id: int
    at: datetime
    outcome: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    next_attempt_at: datetime | None
    worker: str


def subscription_record(row: WebhookSubscriptionRow) -> Subscription:
    return Subscription(row.id, row.estate_id, row.facility_id, row.name, row.url,
                        dict(row.event_filter), row.payload_format, row.enabled,
                        row.created_at, row.updated_at, row.previous_secret_until)


def signing_keys(row: WebhookSubscriptionRow, at: datetime) -> SigningKeys:
    previous = row.previous_secret
    if previous is not None and (row.previous_secret_until is None
                                 or row.previous_secret_until <= at):
        previous = None
    return SigningKeys(row.secret, previous)


def _delivery(row: WebhookDeliveryRow, event_type: str) -> DeliveryRecord:
    return DeliveryRecord(row.id, row.subscription_id, row.event_id, event_type,
                          row.message_id, row.state, row.attempts, row.next_attempt_at,
                          row.last_status, row.last_error, row.created_at, row.finished_at)


class WebhookStore:
    """Subscriptions and the delivery log, for the ``estate webhooks`` commands (and, once
    accounts exist, the admin's HTTP routes)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def add(self, *, estate_id: str, name: str, url: str, secret: str,
            event_filter: Mapping[str, Any], payload_format: str, at: datetime,
            facility_id: str | None = None) -> Subscription:
        """A new, enabled subscription. The URL is checked by the caller (the webhooks
        room's target rules) before it gets here."""
        if payload_format not in PAYLOAD_FORMATS:
            raise ValueError(f"payload format {payload_format!r} is not one of "
                             f"{', '.join(PAYLOAD_FORMATS)}")
        with self._registry.writing() as session:
            if session.get(EstateRow, estate_id) is None:
                raise RecordNotFound(f"no estate {estate_id!r}")
            if facility_id is not None and session.get(
                    FacilityRow, (estate_id, facility_id)) is None:
                raise RecordNotFound(f"no facility {facility_id!r} in estate {estate_id!r}")
            row = WebhookSubscriptionRow(
                estate_id=estate_id, facility_id=facility_id, name=name[:100], url=url,
                event_filter=dict(event_filter), payload_format=payload_format,
                secret=secret, enabled=True, created_at=at, updated_at=at)
            session.add(row)
            session.flush()
            return subscription_record(row)

    def subscriptions(self, estate_id: str | None = None) -> list[Subscription]:
        with self._registry.reading() as session:
            query = select(WebhookSubscriptionRow).order_by(WebhookSubscriptionRow.id)
            if estate_id is not None:
                query = query.where(WebhookSubscriptionRow.estate_id == estate_id)
            return [subscription_record(r) for r in session.scalars(query)]

    def _row(self, session: Any, subscription_id: int) -> WebhookSubscriptionRow:
        row = session.get(WebhookSubscriptionRow, subscription_id)
        if row is None:
            raise RecordNotFound(f"no webhook subscription {subscription_id}")
        return row  # type: ignore[no-any-return]

    def set_enabled(self, subscription_id: int, enabled: bool, at: datetime) -> Subscription:
        """Enable or disable: a disabled subscription gets no new events, and what it has
        waiting stays waiting until it is enabled again."""
        with self._registry.writing() as session:
            row = self._row(session, subscription_id)
            row.enabled = enabled
            row.updated_at = at
            return subscription_record(row)

    def rotate_secret(self, subscription_id: int, new_secret: str, at: datetime,
                      previous_until: datetime) -> Subscription:
        """Sign with ``new_secret`` from now on, and with the current one as well until
        ``previous_until``."""
        with self._registry.writing() as session:
            row = self._row(session, subscription_id)
            row.previous_secret = row.secret
            row.previous_secret_until = previous_until
            row.secret = new_secret
            row.updated_at = at
            return subscription_record(row)

    def deliveries(self, *, subscription_id: int | None = None, state: str | None = None,
                   limit: int = 100) -> list[DeliveryRecord]:
        """The delivery log, newest first."""
        query = (select(WebhookDeliveryRow, OutboxEventRow.event_type)
                 .join(OutboxEventRow, OutboxEventRow.id == WebhookDeliveryRow.event_id)
                 .order_by(WebhookDeliveryRow.id.desc()).limit(min(limit, MAX_LOG_ROWS)))
        if subscription_id is not None:
            query = query.where(WebhookDeliveryRow.subscription_id == subscription_id)
        if state is not None:
            query = query.where(WebhookDeliveryRow.state == state)
        with self._registry.reading() as session:
            return [_delivery(row, kind) for row, kind in session.execute(query)]

    def delivery(self, delivery_id: int) -> DeliveryRecord | None:
        """One delivery of the log, or None."""
        with self._registry.reading() as session:
            row = session.get(WebhookDeliveryRow, delivery_id)
            if row is None:
                return None
            event = session.get(OutboxEventRow, row.event_id)
            return _delivery(row, event.event_type if event is not None else "")

    def attempts(self, delivery_id: int) -> list[AttemptRecord]:
        """A delivery's attempts, oldest first."""
        with self._registry.reading() as session:
            rows = session.scalars(select(WebhookAttemptRow).where(
                WebhookAttemptRow.delivery_id == delivery_id).order_by(WebhookAttemptRow.id)
                .limit(MAX_LOG_ROWS))
            return [AttemptRecord(r.id, r.delivery_id, r.at, r.outcome, r.status_code,
                                  r.latency_ms, r.error, r.next_attempt_at, r.worker)
                    for r in rows]

    def redeliver(self, delivery_id: int, at: datetime) -> DeliveryRecord:
        """Send a delivery again (dead, or delivered: a receiver that lost it), with the
        same ``webhook-id`` and a fresh count of tries."""
        with self._registry.writing() as session:
            row = session.get(WebhookDeliveryRow, delivery_id)
            if row is None:
                raise RecordNotFound(f"no webhook delivery {delivery_id}")
            row.state = "pending"
            row.attempts = 0
            row.next_attempt_at = at
            row.finished_at = None
            event = session.get(OutboxEventRow, row.event_id)
            return _delivery(row, event.event_type if event is not None else "")

    def counts(self) -> dict[str, int]:
        """Deliveries by state (``pending`` is the queue's depth)."""
        with self._registry.reading() as session:
            rows = session.execute(select(WebhookDeliveryRow.state, func.count())
                                   .group_by(WebhookDeliveryRow.state))
            found = {state: int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in ("pending", "delivered", "dead")}
