"""The deliverer's side of the webhooks' tables: events handed to subscriptions (fan-out),
receivers claimed, deliveries taken in order, outcomes written.

- ``fan_out``: outbox events not yet handed on, oldest first, become one delivery per
  subscription the caller's ``route`` picks; the event is then marked handed on
  (``delivered_at``) in the same transaction. One fan-out at a time on PostgreSQL (an
  advisory lock), so deliveries are made in the events' order.
- ``claim``: receivers whose oldest pending delivery is due, not claimed by another
  deliverer (or whose claim ran out); a compare-and-set on the subscription's row.
- ``take``: what a claim sends: the subscription's pending deliveries in event order, up
  to the first that is not due.
- ``finish``: the attempts, the deliveries' new state, a death's ``webhook.dead`` event and
  alarm, and the claim released, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, and_, func, insert, or_, select, text, update

from dispatch.alarms.model import AlarmTransition
from dispatch.registry.alarm_board import record_transitions
from dispatch.registry.control_room import OutboxEventRow
from dispatch.registry.db import Registry
from dispatch.registry.outbox import (
    MAX_ERROR,
    OutboxEvent,
    add_event,
    event_record,
    insert_all_ignoring,
)
from dispatch.registry.webhook_store import (
    SigningKeys,
    Subscription,
    signing_keys,
    subscription_record,
)
from dispatch.registry.webhook_tables import (
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)

_deliveries = cast(Table, WebhookDeliveryRow.__table__)
# Any fixed number: the PostgreSQL advisory lock of a fan-out.
_FAN_OUT_LOCK: Final = 0x77686F6F  # "whoo"
DEAD_RULE: Final = "webhook-dead"

Route = Callable[[OutboxEvent, Sequence[Subscription]], Sequence[int]]


@dataclass(frozen=True, slots=True)
class Pending:
    """A delivery to send: its ids, the event it carries, its tries so far."""

    delivery_id: int
    message_id: str
    attempts: int
    event: OutboxEvent


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed receiver and what to send it, in order."""

    subscription: Subscription
    keys: SigningKeys
    deliveries: list[Pending]


@dataclass(frozen=True, slots=True)
class Result:
    """How one attempt went. ``next_attempt_at`` None with outcome other than delivered
    means the last try: the delivery is dead."""

    delivery_id: int
    outcome: str
    at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    next_attempt_at: datetime | None


def fan_out(registry: Registry, route: Route, at: datetime, limit: int = 500) -> int:
    """Hand up to ``limit`` outbox events to their subscriptions; how many deliveries
    were made."""
    made = 0
    with registry.writing() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FAN_OUT_LOCK})
        events = [event_record(r) for r in session.scalars(
            select(OutboxEventRow).where(OutboxEventRow.delivered_at.is_(None))
            .order_by(OutboxEventRow.id).limit(limit))]
        if not events:
            return 0
        subscriptions: dict[str, list[Subscription]] = {}
        for row in session.scalars(select(WebhookSubscriptionRow).where(
                WebhookSubscriptionRow.enabled.is_(True))
                .order_by(WebhookSubscriptionRow.id)):
            subscriptions.setdefault(row.estate_id, []).append(subscription_record(row))
        rows = [{"subscription_id": subscription_id, "event_id": event.id,
                 "message_id": f"msg_{uuid.uuid4().hex}", "state": "pending",
                 "attempts": 0, "next_attempt_at": at, "created_at": at}
                for event in events
                for subscription_id in route(event, subscriptions.get(event.estate, []))]
        if rows:
            made = insert_all_ignoring(session, _deliveries, rows,
                                       ["subscription_id", "event_id"])
        session.execute(update(OutboxEventRow).where(
            OutboxEventRow.id.in_([e.id for e in events]),
            OutboxEventRow.delivered_at.is_(None)).values(delivered_at=at))
    return made


def _heads_due(now: datetime) -> Any:
    """Subscriptions whose oldest pending delivery is due."""
    heads = (select(WebhookDeliveryRow.subscription_id,
                    func.min(WebhookDeliveryRow.event_id).label("event_id"))
             .where(WebhookDeliveryRow.state == "pending")
             .group_by(WebhookDeliveryRow.subscription_id).subquery())
    return (select(WebhookDeliveryRow.subscription_id)
            .join(heads, and_(WebhookDeliveryRow.subscription_id == heads.c.subscription_id,
                              WebhookDeliveryRow.event_id == heads.c.event_id))
            .where(WebhookDeliveryRow.next_attempt_at <= now))


def claim(registry: Registry, worker: str, now: datetime, until: datetime,
          limit: int) -> list[int]:
    """Claim up to ``limit`` receivers with due deliveries for ``worker`` until ``until``."""
    with registry.reading() as session:
        candidates = list(session.scalars(
            select(WebhookSubscriptionRow.id).where(
                WebhookSubscriptionRow.id.in_(_heads_due(now)),
                WebhookSubscriptionRow.enabled.is_(True),
                or_(WebhookSubscriptionRow.claimed_until.is_(None),
                    WebhookSubscriptionRow.claimed_until < now))
            .order_by(WebhookSubscriptionRow.id).limit(limit * 2)))
    claimed: list[int] = []
    for subscription_id in candidates:
        if len(claimed) >= limit:
            break
        with registry.writing() as session:
            moved = session.execute(update(WebhookSubscriptionRow).where(
                WebhookSubscriptionRow.id == subscription_id,
                or_(WebhookSubscriptionRow.claimed_until.is_(None),
                    WebhookSubscriptionRow.claimed_until < now))
                .values(claimed_by=worker, claimed_until=until))
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(subscription_id)
    return claimed


def take(registry: Registry, subscription_id: int, now: datetime, limit: int) -> Claimed:
    """A claimed receiver's pending deliveries in event order, up to the first not due."""
    with registry.reading() as session:
        row = session.get(WebhookSubscriptionRow, subscription_id)
        if row is None:
            raise LookupError(f"no webhook subscription {subscription_id}")
        pending: list[Pending] = []
        for delivery, event in session.execute(
                select(WebhookDeliveryRow, OutboxEventRow)
                .join(OutboxEventRow, OutboxEventRow.id == WebhookDeliveryRow.event_id)
                .where(WebhookDeliveryRow.subscription_id == subscription_id,
                       WebhookDeliveryRow.state == "pending")
                .order_by(WebhookDeliveryRow.event_id).limit(limit)):
            if delivery.next_attempt_at > now:
                break
            pending.append(Pending(delivery.id, delivery.message_id, delivery.attempts,
                                   event_record(event)))
        return Claimed(subscription_record(row), signing_keys(row, now), pending)


def _dead(session: Any, subscription: Subscription, row: Any, result: Result,
          event_type: str, tries: int) -> None:
    """A delivery past its last try: an outbox event for the other receivers, and an alarm
    on the receiver for the control room (raised once while active)."""
    error = (result.error or f"HTTP {result.status_code}")[:MAX_ERROR]
    add_event(session, subscription.estate, "webhook.dead", "webhook_delivery", str(row.id),
              {"subscription_id": subscription.id, "subscription": subscription.name,
               "message_id": row.message_id, "event_id": row.event_id,
               "event_type": event_type, "attempts": row.attempts + 1, "error": error},
              result.at, f"webhook-delivery:{row.id}:dead:{tries}")
    record_transitions(session, subscription.estate, [AlarmTransition(
        "raise", f"webhook:{subscription.id}", DEAD_RULE, "webhook", "high", None,
        f"webhook {subscription.name}: a delivery failed for good ({error[:150]})",
        int(result.at.timestamp() * 1000))])


def _moved(row: Any, result: Result) -> dict[str, Any]:
    """A delivery's new values after ``result`` (every key, for one executemany)."""
    error = None if result.error is None else result.error[:MAX_ERROR]
    state, finished, next_at = "pending", None, row.next_attempt_at
    if result.outcome == "delivered":
        state, finished = "delivered", result.at
    elif result.next_attempt_at is None:
        state, finished = "dead", result.at
    else:
        next_at = result.next_attempt_at
    return {"id": row.id, "attempts": row.attempts + 1, "last_status": result.status_code,
            "last_error": error, "state": state, "finished_at": finished,
            "next_attempt_at": next_at}


def finish(registry: Registry, worker: str, claimed: Claimed,
           results: Sequence[Result]) -> int:
    """Write the attempts and their deliveries' new states, and release the claim; how
    many deliveries died. A delivery no longer pending (redelivered and finished
    meanwhile, or removed) is left as it is."""
    subscription = claimed.subscription
    events = {p.delivery_id: p.event.type for p in claimed.deliveries}
    moves: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    deaths = 0
    with registry.writing() as session:
        rows = {r.id: r for r in session.execute(
            select(WebhookDeliveryRow.id, WebhookDeliveryRow.attempts,
                   WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.message_id,
                   WebhookDeliveryRow.event_id)
            .where(WebhookDeliveryRow.id.in_([r.delivery_id for r in results]),
                   WebhookDeliveryRow.state == "pending").with_for_update())}
        for result in results:
            row = rows.get(result.delivery_id)
            if row is None:
                continue
            moves.append(_moved(row, result))
            attempts.append({"delivery_id": row.id, "at": result.at, "outcome": result.outcome,
                             "status_code": result.status_code,
                             "latency_ms": result.latency_ms,
                             "error": moves[-1]["last_error"],
                             "next_attempt_at": result.next_attempt_at,
                             "worker": worker[:200]})
            if moves[-1]["state"] == "dead":
                tries = session.scalar(select(func.count()).where(
                    WebhookAttemptRow.delivery_id == row.id)) or 0
                _dead(session, subscription, row, result, events.get(row.id, ""), tries)
                deaths += 1
        if moves:
            session.execute(update(WebhookDeliveryRow), moves)
            session.execute(insert(WebhookAttemptRow), attempts)
        session.execute(update(WebhookSubscriptionRow).where(
            WebhookSubscriptionRow.id == subscription.id,
            WebhookSubscriptionRow.claimed_by == worker)
            .values(claimed_by=None, claimed_until=None))
    return deaths


def release(registry: Registry, worker: str, subscription_id: int) -> None:
    """Give a claim back without sending (the deliverer is stopping)."""
    with registry.writing() as session:
        session.execute(update(WebhookSubscriptionRow).where(
            WebhookSubscriptionRow.id == subscription_id,
            WebhookSubscriptionRow.claimed_by == worker)
            .values(claimed_by=None, claimed_until=None))
