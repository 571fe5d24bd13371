"""``estate webhooks ...``: subscriptions, the delivery log and redelivery, on the registry
at ``DISPATCH_REGISTRY_URL`` (docs/webhooks.md).

A new or rotated secret is written to the file named by ``--secret-file`` (mode 0600),
never printed: hand that file to the receiver.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from dispatch.registry.base import utc_now
from dispatch.registry.db import Registry
from dispatch.registry.webhook_store import Subscription, WebhookStore
from dispatch.settings import DispatchSettings
from dispatch.webhooks.manage import add_subscription, rotate_secret
from dispatch.webhooks.targets import TargetRefused, TargetUnresolved, origin
from estate.errors import EstateError
from estate.model import load_estate

app = typer.Typer(help="Webhook subscriptions, deliveries and redelivery.",
                  no_args_is_help=True)


def _store(settings: DispatchSettings) -> WebhookStore:
    registry = Registry(settings.registry_url)
    registry.migrate()
    return WebhookStore(registry)


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret + "\n")
    os.chmod(path, 0o600)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"estate webhooks: {message}", err=True)
    return typer.Exit(code)


def _line(s: Subscription) -> str:
    scope = f"facility {s.facility}" if s.facility else "estate"
    rotated = (f", old secret valid until {s.previous_secret_until:%Y-%m-%d %H:%M}Z"
               if s.previous_secret_until and s.previous_secret_until > utc_now() else "")
    return (f"{s.id:>4}  {'on ' if s.enabled else 'off'}  {s.name:<20} {origin(s.url):<40} "
            f"{s.payload_format:<11} {s.estate}/{scope}  filter={s.event_filter}{rotated}")


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="The receiver's URL (http or https)")],
    secret_file: Annotated[Path, typer.Option(help="Where to write the new secret (0600)")],
    name: Annotated[str, typer.Option(help="A name operators know it by")] = "",
    estate: Annotated[str | None, typer.Option(help="Estate (default: the estate file's)")
                      ] = None,
    tenant: Annotated[str | None, typer.Option(
        help="A tenant's subscription: only this facility's events")] = None,
    event_type: Annotated[list[str] | None, typer.Option(
        "--type", help="Event types wanted (alarm.raised, alarm.*; repeatable)")] = None,
    severity: Annotated[list[str] | None, typer.Option(help="Severities wanted")] = None,
    facility: Annotated[list[str] | None, typer.Option(help="Facilities wanted")] = None,
    payload_format: Annotated[str, typer.Option("--format", help="cloudevents or chat")
                              ] = "cloudevents",
) -> None:
    """Subscribe a receiver; the target is checked (after DNS) before it is stored."""
    settings = DispatchSettings()
    estate_id = estate or load_estate(settings.estate_file).id
    try:
        subscription, secret = add_subscription(
            _store(settings), settings.webhooks, estate_id=estate_id,
            name=name or origin(url), url=url, payload_format=payload_format,
            facility_id=tenant, event_filter={"types": event_type or [],
                                              "severities": severity or [],
                                              "facilities": facility or []})
    except TargetRefused as exc:
        raise _fail(f"target refused: {exc.reason}") from exc
    except (TargetUnresolved, ValueError, EstateError) as exc:
        raise _fail(str(exc)) from exc
    _write_secret(secret_file, secret)
    typer.echo(f"subscription {subscription.id} added; its secret is in {secret_file}")
    typer.echo(_line(subscription))


@app.command("list")
def list_(estate: Annotated[str | None, typer.Option(help="Only this estate")] = None) -> None:
    """The subscriptions (never their secrets)."""
    for subscription in _store(DispatchSettings()).subscriptions(estate):
        typer.echo(_line(subscription))


def _enable(subscription_id: int, enabled: bool) -> None:
    try:
        subscription = _store(DispatchSettings()).set_enabled(subscription_id, enabled,
                                                              utc_now())
    except EstateError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(_line(subscription))


@app.command("disable")
def disable(subscription_id: int) -> None:
    """Stop sending to a receiver (what waits for it stays waiting)."""
    _enable(subscription_id, False)


@app.command("enable")
def enable(subscription_id: int) -> None:
    """Send to a receiver again."""
    _enable(subscription_id, True)


@app.command("rotate-secret")
def rotate(
    subscription_id: int,
    secret_file: Annotated[Path, typer.Option(help="Where to write the new secret (0600)")],
    overlap_s: Annotated[float | None, typer.Option(
        help="How long the old secret keeps signing (default: the settings')")] = None,
) -> None:
    """A new secret; deliveries carry both signatures while the old one is valid."""
    settings = DispatchSettings()
    try:
        subscription, secret = rotate_secret(_store(settings), settings.webhooks,
                                             subscription_id, overlap_s)
    except EstateError as exc:
        raise _fail(str(exc)) from exc
    _write_secret(secret_file, secret)
    typer.echo(f"subscription {subscription.id}: new secret in {secret_file}")
    typer.echo(_line(subscription))


@app.command("deliveries")
def deliveries(
    subscription: Annotated[int | None, typer.Option(help="Only this subscription's")] = None,
    state: Annotated[str | None, typer.Option(help="pending, delivered or dead")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
    attempts: Annotated[bool, typer.Option(help="Each delivery's attempts too")] = False,
) -> None:
    """The delivery log: state, tries, last answer, next try."""
    store = _store(DispatchSettings())
    for d in store.deliveries(subscription_id=subscription, state=state, limit=limit):
        next_try = _when(d.next_attempt_at) if d.state == "pending" else "-"
        typer.echo(f"{d.id:>6}  sub {d.subscription_id:<4} {d.event_type:<18} {d.state:<9} "
                   f"tries {d.attempts:<3} status {d.last_status or '-':<4} next {next_try}  "
                   f"{d.message_id}  {d.last_error or ''}")
        if attempts:
            for a in store.attempts(d.id):
                typer.echo(f"          {_when(a.at)}  {a.outcome:<9} {a.status_code or '-':<4} "
                           f"{a.latency_ms or 0:8.1f} ms  next {_when(a.next_attempt_at)}  "
                           f"{a.error or ''}")


@app.command("redeliver")
def redeliver(delivery_id: int) -> None:
    """Send a delivery again (same webhook-id), with a fresh count of tries."""
    try:
        d = _store(DispatchSettings()).redeliver(delivery_id, utc_now())
    except EstateError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"delivery {d.id} ({d.message_id}) queued again")
