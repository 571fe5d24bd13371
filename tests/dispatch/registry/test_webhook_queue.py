"""The webhook queue on SQLite and PostgreSQL: fan-out makes one delivery per event and
subscription however often it runs, claims keep deliverers apart (one receiver, one
deliverer, until the claim runs out), sends are taken in event order up to the first not
due, and outcomes move deliveries (dead after the last try, with its event and alarm)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from dispatch.alarms.model import AlarmTransition
from dispatch.registry.alarm_board import active_alarms, record_transitions
from dispatch.registry.db import Registry, upgrade
from dispatch.registry.loader import load_estate_into
from dispatch.registry.outbox import events, pending_events
from dispatch.registry.webhook_queue import Result, claim, fan_out, finish, take
from dispatch.registry.webhook_store import WebhookStore
from dispatch.webhooks.payloads import route
from estate.model import SAMPLE_ESTATE, load_estate

SPEC = load_estate(SAMPLE_ESTATE)
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.fixture
def registry(engine: Engine) -> Registry:
    upgrade(engine)
    r = Registry(engine)
    load_estate_into(r, SPEC)
    return r


def _alarms(registry: Registry, first: int, count: int) -> None:
    with registry.writing() as session:
        record_transitions(session, SPEC.id, [
            AlarmTransition("raise", f"textile/M{n}", "band", "band", "high", 1.0,  # type: ignore[arg-type]
                            f"alarm {n}", int(T0.timestamp() * 1000))
            for n in range(first, first + count)])


def _subscribe(registry: Registry, name: str, **f: list[str]) -> int:
    return WebhookStore(registry).add(estate_id=SPEC.id, name=name, url=f"http://{name}/",
                                      secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                      event_filter={"types": [], "severities": [],
                                                    "facilities": [], **f},
                                      payload_format="cloudevents", at=T0).id


def test_fan_out_once_per_event_and_subscription(registry: Registry) -> None:
    a = _subscribe(registry, "a")
    b = _subscribe(registry, "b", types=["incident.*"])
    _alarms(registry, 0, 5)
    threads = [threading.Thread(target=fan_out, args=(registry, route, T0)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fan_out(registry, route, T0) == 0
    store = WebhookStore(registry)
    assert len(store.deliveries(subscription_id=a)) == 5
    assert store.deliveries(subscription_id=b) == []
    with registry.reading() as session:
        assert pending_events(session) == []
    assert len({d.message_id for d in store.deliveries()}) == 5


def test_a_claimed_receiver_is_nobody_elses_until_its_claim_runs_out(registry: Registry) -> None:
    _subscribe(registry, "a")
    _subscribe(registry, "b")
    _alarms(registry, 0, 3)
    fan_out(registry, route, T0)
    first = claim(registry, "w1", T0, T0 + 60 * S, 1)
    second = claim(registry, "w2", T0, T0 + 60 * S, 5)
    assert len(first) == 1
    assert len(second) == 1
    assert first != second
    assert claim(registry, "w3", T0 + 30 * S, T0 + 90 * S, 5) == []
    assert sorted(claim(registry, "w3", T0 + 61 * S, T0 + 120 * S, 5)) == sorted(
        first + second)


def test_sends_in_order_and_outcomes_until_dead(registry: Registry) -> None:
    sid = _subscribe(registry, "a")
    _alarms(registry, 0, 3)
    fan_out(registry, route, T0)
    [claimed] = claim(registry, "w", T0, T0 + 60 * S, 1)
    batch = take(registry, claimed, T0, 10)
    assert [p.event.id for p in batch.deliveries] == sorted(p.event.id for p in batch.deliveries)
    head, second, _ = batch.deliveries
    finish(registry, "w", batch, [
        Result(head.delivery_id, "delivered", T0, 204, 3.0, None, None),
        Result(second.delivery_id, "failed", T0, 500, 3.0, "HTTP 500", T0 + 10 * S)])
    # Released: claimable again, but nothing is due before the failed one's next try.
    assert claim(registry, "w", T0 + 5 * S, T0 + 60 * S, 1) == []
    [again] = claim(registry, "w", T0 + 10 * S, T0 + 70 * S, 1)
    batch = take(registry, again, T0 + 10 * S, 10)
    assert batch.deliveries[0].delivery_id == second.delivery_id
    assert finish(registry, "w", batch, [
        Result(second.delivery_id, "refused", T0 + 10 * S, None, 1.0,
               "redirect 1 to http://169.254.169.254 refused", None)]) == 1
    store = WebhookStore(registry)
    states = {d.id: d.state for d in store.deliveries(subscription_id=sid)}
    assert states[head.delivery_id] == "delivered"
    assert states[second.delivery_id] == "dead"
    assert store.counts() == {"pending": 1, "delivered": 1, "dead": 1}
    with registry.reading() as session:
        dead = [e for e in events(session, SPEC.id) if e.type == "webhook.dead"]
        alarm = [a for a in active_alarms(session, SPEC.id)
                 if a.alarm.source == f"webhook:{sid}"]
    assert len(dead) == 1
    assert dead[0].payload["error"] == "redirect 1 to http://169.254.169.254 refused"
    assert len(alarm) == 1
