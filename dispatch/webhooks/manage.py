"""Managing subscriptions, as the ``estate webhooks`` commands (and the admin's
routes) do it: the target checked and the filter validated before anything is stored, a
secret made here and handed back to the caller once, never stored anywhere else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dispatch.registry.base import utc_now
from dispatch.registry.webhook_store import Subscription, WebhookStore
from dispatch.settings import WebhookSettings
from dispatch.webhooks.payloads import check_filter
from dispatch.webhooks.signing import new_secret
from dispatch.webhooks.targets import Resolver, TargetPolicy, check_url, system_resolver


def add_subscription(store: WebhookStore, settings: WebhookSettings, *, estate_id: str,
                     name: str, url: str, event_filter: Mapping[str, Any],
                     payload_format: str = "cloudevents", facility_id: str | None = None,
                     resolve: Resolver = system_resolver) -> tuple[Subscription, str]:
    """A new subscription and its secret; ``TargetRefused`` (with the reason) for a URL
    that may not be sent to, ``ValueError`` for a filter or format that is wrong."""
    check_url(url, TargetPolicy(settings.allow_loopback, settings.allow_private), resolve)
    clean = check_filter(event_filter)
    secret = new_secret()
    subscription = store.add(estate_id=estate_id, name=name, url=url, secret=secret,
                             event_filter=clean, payload_format=payload_format,
                             at=utc_now(), facility_id=facility_id)
    return subscription, secret


def rotate_secret(store: WebhookStore, settings: WebhookSettings, subscription_id: int,
                  overlap_s: float | None = None) -> tuple[Subscription, str]:
    """A new secret; the old one keeps signing for ``overlap_s`` (the settings' by
    default), so the receiver can switch without a delivery it cannot verify."""
    at = utc_now()
    secret = new_secret()
    overlap = settings.rotation_overlap_s if overlap_s is None else overlap_s
    return store.rotate_secret(subscription_id, secret, at,
                               at + timedelta(seconds=overlap)), secret
