"""The webhooks' tables: subscriptions (where and what to send), deliveries (one per event
and subscription, with its state and next try) and attempts (the delivery log).

A delivery's ``message_id`` is the ``webhook-id`` a receiver deduplicates by: made once,
when the event is handed to the subscription, and sent unchanged on every retry. Order
per endpoint is kept by sending only a subscription's oldest unfinished delivery and those
behind it while it succeeds; a subscription is claimed by one deliverer at a time
(``claimed_by`` until ``claimed_until``), so no two deliverers send the same delivery at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.registry.base import Base, one_of

PAYLOAD_FORMATS: Final = ("cloudevents", "chat")
DELIVERY_STATES: Final = ("pending", "delivered", "dead")
ATTEMPT_OUTCOMES: Final = ("delivered", "failed", "refused")


class WebhookSubscriptionRow(Base):
    """A receiver: its URL, the events it wants, its secrets and payload format.

    ``facility_id`` set makes it a tenant's subscription: it sees that facility's events
    only, whatever its filter says. ``previous_secret`` stays valid (both signatures are
    sent) until ``previous_secret_until``, so a receiver can switch without losing one."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (one_of("payload_format", PAYLOAD_FORMATS, "payload_format"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    estate_id: Mapped[str] = mapped_column(
        ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    facility_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    event_filter: Mapped[dict[str, Any]]
    payload_format: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(String(200))
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]


class WebhookDeliveryRow(Base):
    """One event for one subscription."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        UniqueConstraint("message_id"),
        one_of("state", DELIVERY_STATES, "state"),
        Index(None, "subscription_id", "state", "event_id"),
        Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class WebhookAttemptRow(Base):
    """One try of a delivery: when, what the receiver answered and how fast, what next."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (one_of("outcome", ATTEMPT_OUTCOMES, "outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    worker: Mapped[str] = mapped_column(String(200))
