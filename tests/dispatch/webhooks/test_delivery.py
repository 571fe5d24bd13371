"""Deliveries to a real receiver that verifies every signature: in order, once each when
all goes well; retried with the same webhook-id through failures; Retry-After honoured;
dead after the last try (an event and an alarm), then redelivered by hand; targets
refused after DNS and on redirects; two deliverers never sending the same delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from dispatch.registry.alarm_board import active_alarms
from dispatch.registry.db import Registry
from dispatch.registry.outbox import events, pending_events
from dispatch.registry.webhook_store import WebhookStore
from dispatch.settings import WebhookSettings
from dispatch.webhooks.deliverer import Deliverer
from dispatch.webhooks.manage import add_subscription
from tests.dispatch.registries import SPEC
from tests.dispatch.webhooks.receiver import Receiver
from tests.dispatch.webhooks.support import FAST, raise_alarms, wait_for

pytestmark = pytest.mark.servers


def subscribe(registry: Registry, receiver: Receiver, base: str, path: str,
              settings: WebhookSettings = FAST, **f: list[str]) -> int:
    subscription, secret = add_subscription(
        WebhookStore(registry), settings, estate_id=SPEC.id, name=path, url=base + path,
        event_filter=f)
    receiver.secrets.setdefault(path, []).append(secret)
    return subscription.id


def idle(registry: Registry) -> bool:
    """No event waits to be handed on and no delivery is pending."""
    with registry.reading() as session:
        waiting = pending_events(session, limit=1)
    return not waiting and WebhookStore(registry).counts()["pending"] == 0


def settle(deliverer: Deliverer, registry: Registry, timeout_s: float = 20.0) -> None:
    """Run rounds until everything is delivered or dead."""
    wait_for(lambda: idle(registry), timeout_s, "the queue to empty", step=deliverer.run_once)


def _attempts(result: str) -> float:
    return REGISTRY.get_sample_value("dispatch_webhook_deliveries_total",
                                     {"result": result}) or 0.0


def sequences(receiver: Receiver, path: str) -> list[int]:
    return [int(body["sequence"]) for body in receiver.accepted(path).values()]


def test_every_event_once_in_order_signed(registry: Registry, receiver: Receiver) -> None:
    base = receiver.url
    subscribe(registry, receiver, base, "/all")
    subscribe(registry, receiver, base, "/critical", severities=["critical"])
    raise_alarms(registry, 0, 30)
    raise_alarms(registry, 30, 5, severity="critical")
    deliverer = Deliverer(registry, FAST, "test")
    try:
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    assert receiver.rejected == []
    assert len(receiver.arrivals("/all")) == len(receiver.accepted("/all")) == 35
    assert len(receiver.accepted("/critical")) == 5
    assert sequences(receiver, "/all") == sorted(sequences(receiver, "/all"))
    assert {b["data"]["severity"] for b in receiver.accepted("/critical").values()} == {
        "critical"}
    log = WebhookStore(registry).deliveries(limit=100)
    assert {d.state for d in log} == {"delivered"}
    assert {d.message_id for d in log} == set(receiver.accepted())


def test_retries_keep_the_id_and_the_order(registry: Registry, receiver: Receiver) -> None:
    subscribe(registry, receiver, receiver.url, "/flaky")
    raise_alarms(registry, 0, 10)
    receiver.fail_next(["500", "500", "timeout", "drop", "503", "500"])
    before = {o: _attempts(o) for o in ("delivered", "retried")}
    deliverer = Deliverer(registry, FAST, "test")
    try:
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    arrivals = receiver.arrivals("/flaky")
    accepted = receiver.accepted("/flaky")
    assert len(accepted) == 10
    assert len(arrivals) > len(accepted)  # the timed-out one arrived twice, same id
    assert sequences(receiver, "/flaky") == sorted(sequences(receiver, "/flaky"))
    first = WebhookStore(registry).deliveries(limit=100)[-1]
    tries = WebhookStore(registry).attempts(first.id)
    assert [a.outcome for a in tries] == ["failed"] * 6 + ["delivered"]
    assert [a.status_code for a in tries] == [500, 500, None, None, 503, 500, 204]
    assert "timed out" in (tries[2].error or "")
    assert "RemoteProtocolError" in (tries[3].error or "")
    assert all(a.next_attempt_at is not None for a in tries[:-1])
    assert all(a.latency_ms is not None for a in tries)
    assert _attempts("retried") - before["retried"] == 6
    assert _attempts("delivered") - before["delivered"] == 10


def test_retry_after_is_honoured(registry: Registry, receiver: Receiver) -> None:
    subscribe(registry, receiver, receiver.url, "/busy")
    raise_alarms(registry, 0, 1)
    receiver.fail_next(["503-retry-after-2"])
    deliverer = Deliverer(registry, FAST, "test")
    try:
        deliverer.run_once()
        [delivery] = WebhookStore(registry).deliveries()
        [attempt] = WebhookStore(registry).attempts(delivery.id)
        assert attempt.status_code == 503
        assert attempt.next_attempt_at is not None
        assert (attempt.next_attempt_at - attempt.at).total_seconds() >= 2.0
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    assert len(receiver.accepted("/busy")) == 1


def test_dead_after_the_last_try_then_redelivered(registry: Registry,
                                                  receiver: Receiver) -> None:
    settings = FAST.model_copy(update={"max_attempts": 3})
    sid = subscribe(registry, receiver, receiver.url, "/down", settings)
    raise_alarms(registry, 0, 2)
    receiver.fail_next(["500"] * 3)
    deliverer = Deliverer(registry, settings, "test")
    try:
        settle(deliverer, registry)
        store = WebhookStore(registry)
        second, first = store.deliveries(subscription_id=sid)
        assert (first.state, first.attempts, first.last_status) == ("dead", 3, 500)
        assert second.state == "delivered"  # not held back by a dead one
        assert store.counts()["dead"] == 1
        with registry.reading() as session:
            dead = [e for e in events(session, SPEC.id) if e.type == "webhook.dead"]
            alarms = [a for a in active_alarms(session, SPEC.id)
                      if a.alarm.source == f"webhook:{sid}"]
        assert len(dead) == 1
        assert dead[0].payload["message_id"] == first.message_id
        assert len(alarms) == 1
        assert alarms[0].alarm.rule_id == "webhook-dead"
        store.redeliver(first.id, datetime.now(UTC))
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    assert store.deliveries(subscription_id=sid)[1].state == "delivered"
    assert first.message_id in receiver.accepted("/down")
    assert len(receiver.accepted("/down")) == 2


def test_redirects_followed_but_not_towards_a_refused_target(registry: Registry,
                                                             receiver: Receiver) -> None:
    sid = subscribe(registry, receiver, receiver.url, "/moved")
    receiver.secrets["/new"] = receiver.secrets["/moved"]
    raise_alarms(registry, 0, 2)
    receiver.fail_next([f"redirect:{receiver.url}/new", "ok",
                        "redirect:http://169.254.169.254/latest/meta-data/"])
    deliverer = Deliverer(registry, FAST.model_copy(update={"max_attempts": 1}), "test")
    try:
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    assert len(receiver.accepted("/new")) == 1
    second, _ = WebhookStore(registry).deliveries(subscription_id=sid)
    [attempt] = WebhookStore(registry).attempts(second.id)
    assert attempt.outcome == "refused"
    assert attempt.error == ("redirect 1 to http://169.254.169.254 refused: "
                             "169.254.169.254 is a link-local address")


def test_a_name_resolving_to_loopback_is_refused_when_sending(registry: Registry,
                                                              receiver: Receiver) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    sid = subscribe(registry, receiver, f"http://localhost:{port}", "/local")
    raise_alarms(registry, 0, 1)
    strict = FAST.model_copy(update={"allow_loopback": False, "max_attempts": 1})
    deliverer = Deliverer(registry, strict, "test")
    try:
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    [delivery] = WebhookStore(registry).deliveries(subscription_id=sid)
    assert delivery.state == "dead"
    assert delivery.last_error is not None
    assert "localhost resolves to" in delivery.last_error
    assert "a loopback address" in delivery.last_error
    assert receiver.arrivals("/local") == []


def test_two_deliverers_never_send_one_delivery_twice(registry: Registry,
                                                      receiver: Receiver) -> None:
    paths = [f"/r{n}" for n in range(4)]
    for path in paths:
        subscribe(registry, receiver, receiver.url, path)
    raise_alarms(registry, 0, 150)
    settings = FAST.model_copy(update={"batch": 7, "concurrency": 2})
    deliverers = [Deliverer(registry, settings, f"d{n}") for n in range(2)]
    for d in deliverers:
        d.start()
    try:
        wait_for(lambda: sum(len(receiver.accepted(p)) for p in paths) == 600, 60,
                 "600 deliveries")
    finally:
        for d in deliverers:
            d.stop()
    for path in paths:
        assert len(receiver.arrivals(path)) == 150  # each exactly once
        assert sequences(receiver, path) == sorted(sequences(receiver, path))
    with registry.reading() as session:
        from dispatch.registry.webhook_tables import WebhookAttemptRow
        workers = set(session.scalars(select(WebhookAttemptRow.worker)))
    assert workers == {"d0", "d1"}


def test_the_worker_starts_a_deliverer_with_its_metrics(registry: Registry,
                                                       receiver: Receiver) -> None:
    from dispatch.__main__ import start_webhooks
    from dispatch.settings import DispatchSettings
    from launcher.servers import free_port

    subscribe(registry, receiver, receiver.url, "/worker")
    raise_alarms(registry, 0, 3)
    port = free_port()
    settings = DispatchSettings(registry_url=registry.url,
                                webhooks=FAST.model_copy(update={"metrics_port": port}))
    parts = start_webhooks(settings, registry, "worker")
    assert parts is not None
    try:
        wait_for(lambda: len(receiver.accepted("/worker")) == 3, 20, "three deliveries")
        wait_for(lambda: idle(registry), 20, "the outcomes written")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        parts.stop()
    assert 'dispatch_webhook_deliveries_total{result="delivered"}' in text
    assert "dispatch_webhook_queue_depth" in text
    assert "dispatch_webhook_dead_deliveries" in text
    off = DispatchSettings(registry_url=registry.url,
                           webhooks=FAST.model_copy(update={"enabled": False}))
    assert start_webhooks(off, registry, "worker") is None


def test_a_large_answer_is_read_only_in_part(registry: Registry, receiver: Receiver) -> None:
    sid = subscribe(registry, receiver, receiver.url, "/chatty")
    raise_alarms(registry, 0, 1)
    receiver.fail_next(["500-big"])
    deliverer = Deliverer(registry, FAST, "test")
    try:
        settle(deliverer, registry)
    finally:
        deliverer.stop()
    [delivery] = WebhookStore(registry).deliveries(subscription_id=sid)
    [failed, delivered] = WebhookStore(registry).attempts(delivery.id)
    assert failed.status_code == 500
    assert failed.error == "HTTP 500: " + "x" * 200
    assert delivered.outcome == "delivered"
