"""Webhook subscriptions and their delivery log for admins: the same functions as
``estate webhooks ...`` (``dispatch.webhooks.manage`` and the registry's ``WebhookStore``).

A new or rotated secret is in the answer of that one call only: never listed, never
logged. Admins manage the whole estate (an admin is never bound to a facility); the
routes still keep an account bound to one to that facility's subscriptions.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from dispatch.registry.base import utc_now
from dispatch.registry.webhook_store import Subscription, WebhookStore
from dispatch.web.auth import Admin, facility_scope
from dispatch.web.deps import Context, RegistryDep
from dispatch.webhooks.manage import add_subscription, rotate_secret
from dispatch.webhooks.targets import TargetRefused, TargetUnresolved
from estate.topics import IDENTIFIER_PATTERN

router = APIRouter(tags=["webhooks"])

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
# The attempts shown with each delivery of the log.
MAX_ATTEMPTS_SHOWN: Final = 20


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    types: list[Annotated[str, Field(max_length=64)]] = Field([], max_length=32)
    severities: list[Annotated[str, Field(max_length=32)]] = Field([], max_length=8)
    facilities: list[Annotated[str, Field(pattern=f"^{IDENTIFIER_PATTERN}$")]] = Field(
        [], max_length=64)


class NewSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, description="http(s) URL of the receiver")
    name: str = Field("", max_length=100)
    filter: Filter = Field(default_factory=Filter)
    format: str = Field("cloudevents", pattern="^(cloudevents|chat)$")
    tenant: str | None = Field(None, pattern=f"^{IDENTIFIER_PATTERN}$",
                               description="only this facility's events")


def _store(registry: RegistryDep) -> WebhookStore:
    return WebhookStore(registry)


Store = Annotated[WebhookStore, Depends(_store)]


def _view(s: Subscription) -> dict[str, Any]:
    return asdict(s)


def _own(store: WebhookStore, identity: Admin, subscription_id: int) -> Subscription:
    """The subscription if this admin may manage it (404 when not there, 403 when it is
    another facility's)."""
    for s in store.subscriptions():
        if s.id == subscription_id:
            own = identity.user.facility
            if own is not None and s.facility != own:
                raise HTTPException(403, f"this account manages facility {own!r} only")
            return s
    raise HTTPException(404, f"no webhook subscription {subscription_id}")


def _visible(store: WebhookStore, identity: Admin, estate: str) -> list[Subscription]:
    own = identity.user.facility
    return [s for s in store.subscriptions(estate) if own is None or s.facility == own]


@router.get("/api/webhooks")
def subscriptions(identity: Admin, store: Store, context: Context) -> dict[str, Any]:
    """The subscriptions with their state (never their secrets)."""
    return {"subscriptions": [_view(s) for s in _visible(store, identity, context.spec.id)]}


@router.post("/api/webhooks", status_code=201)
def add(body: NewSubscription, identity: Admin, store: Store,
        context: Context) -> dict[str, Any]:
    """Subscribe a receiver; a refused target is 422 with the reason. ``secret`` is shown
    in this answer only."""
    tenant = facility_scope(identity, body.tenant)
    if tenant is not None and tenant not in {f.id for f in context.spec.facilities}:
        raise HTTPException(422, f"no facility {tenant!r} in estate {context.spec.id!r}")
    try:
        subscription, secret = add_subscription(
            store, context.webhooks, estate_id=context.spec.id, name=body.name or body.url,
            url=body.url, event_filter=body.filter.model_dump(), payload_format=body.format,
            facility_id=tenant)
    except TargetRefused as exc:
        raise HTTPException(422, f"target refused: {exc.reason}") from exc
    except (TargetUnresolved, ValueError) as exc:
        raise HTTPException(422, str(exc)) from exc
    return {**_view(subscription), "secret": secret}


def _enable(store: WebhookStore, identity: Admin, subscription_id: int,
            enabled: bool) -> dict[str, Any]:
    _own(store, identity, subscription_id)
    return _view(store.set_enabled(subscription_id, enabled, utc_now()))


@router.post("/api/webhooks/{subscription_id}/disable")
def disable(subscription_id: Id, identity: Admin, store: Store) -> dict[str, Any]:
    """Stop sending to the receiver (what waits for it stays waiting)."""
    return _enable(store, identity, subscription_id, False)


@router.post("/api/webhooks/{subscription_id}/enable")
def enable(subscription_id: Id, identity: Admin, store: Store) -> dict[str, Any]:
    """Send to the receiver again."""
    return _enable(store, identity, subscription_id, True)


@router.post("/api/webhooks/{subscription_id}/rotate-secret")
def rotate(subscription_id: Id, identity: Admin, store: Store,
           context: Context) -> dict[str, Any]:
    """A new secret, in this answer only; the old one keeps signing for the settings'
    overlap."""
    _own(store, identity, subscription_id)
    subscription, secret = rotate_secret(store, context.webhooks, subscription_id)
    return {**_view(subscription), "secret": secret}


@router.get("/api/webhooks/deliveries")
def deliveries(identity: Admin, store: Store, context: Context,
               subscription: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
               state: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")
                                ] = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """The delivery log, newest first, each delivery with its attempts (status code,
    latency, outcome, next try)."""
    allowed = {s.id for s in _visible(store, identity, context.spec.id)}
    if subscription is not None and subscription not in allowed:
        raise HTTPException(404, f"no webhook subscription {subscription}")
    found = [d for d in store.deliveries(subscription_id=subscription, state=state,
                                         limit=limit) if d.subscription_id in allowed]
    return {"deliveries": [{**asdict(d), "attempt_log": [
        asdict(a) for a in store.attempts(d.id)[-MAX_ATTEMPTS_SHOWN:]]} for d in found]}


@router.post("/api/webhooks/deliveries/{delivery_id}/redeliver")
def redeliver(delivery_id: Id, identity: Admin, store: Store,
              context: Context) -> dict[str, Any]:
    """Send a delivery again, with the same ``webhook-id`` and a fresh count of tries."""
    allowed = {s.id for s in _visible(store, identity, context.spec.id)}
    found = store.delivery(delivery_id)
    if found is None or found.subscription_id not in allowed:
        raise HTTPException(404, f"no webhook delivery {delivery_id}")
    return asdict(store.redeliver(delivery_id, utc_now()))

