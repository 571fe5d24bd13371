"""Acceptance: a receiver that fails with 500s, times out and drops connections for a while,
then recovers, while the deliverer (``python -m dispatch webhooks``, a process of its own)
is SIGKILLed in the middle and started again. Every event arrives at least once, retries
carry the same webhook-id, and the receiver, deduplicating by id, ends with exactly the
events raised, in order per endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from dispatch.registry.db import Registry
from dispatch.registry.outbox import events
from dispatch.registry.webhook_store import WebhookStore
from dispatch.webhooks.manage import add_subscription
from tests.dispatch.registries import SPEC
from tests.dispatch.webhooks.receiver import Receiver
from tests.dispatch.webhooks.support import FAST, raise_alarms, wait_for

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[3]
PATHS = ("/tickets", "/chat")


def _deliverer(registry: Registry, log: BinaryIO) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DISPATCH_REGISTRY_URL": registry.engine.url.render_as_string(False),
           "DISPATCH_WEBHOOKS__ALLOW_LOOPBACK": "true",
           "DISPATCH_WEBHOOKS__BACKOFF_BASE_S": "0.05",
           "DISPATCH_WEBHOOKS__BACKOFF_MAX_S": "0.3",
           "DISPATCH_WEBHOOKS__READ_TIMEOUT_S": "0.5",
           "DISPATCH_WEBHOOKS__CONNECT_TIMEOUT_S": "1",
           "DISPATCH_WEBHOOKS__POLL_S": "0.05",
           # A killed deliverer's claims run out after this: the new one takes over then.
           "DISPATCH_WEBHOOKS__CLAIM_S": "3",
           "DISPATCH_WEBHOOKS__BATCH": "5",
           "DISPATCH_WEBHOOKS__MAX_ATTEMPTS": "100"}
    return subprocess.Popen([sys.executable, "-m", "dispatch", "webhooks"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


def test_outage_and_a_killed_deliverer_lose_nothing(
        registry: Registry, receiver: Receiver, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:
    receiver.hold_s = 1.0  # longer than the deliverer's read timeout (0.5 s)
    for path in PATHS:
        _, secret = add_subscription(WebhookStore(registry), FAST, estate_id=SPEC.id,
                                     name=path, url=receiver.url + path, event_filter={},
                                     payload_format="cloudevents")
        receiver.secrets[path] = [secret]
    log_path = tmp_path / "deliverer.log"
    log = log_path.open("ab")
    raise_alarms(registry, 0, 20)
    processes.append(_deliverer(registry, log))
    wait_for(lambda: len(receiver.accepted()) >= 10, 30, "first deliveries")
    # The outage: 500s, answers after the read timeout, dropped connections, in turn.
    receiver.fail_for(8.0, ["500", "timeout", "drop"])
    raise_alarms(registry, 20, 20)
    wait_for(lambda: receiver.faults_served >= 6, 30, "the outage to be felt")
    processes[0].send_signal(signal.SIGKILL)  # in the middle of it
    processes[0].wait(10)
    raise_alarms(registry, 40, 20)  # raised while no deliverer runs
    processes.append(_deliverer(registry, log))
    served_before_restart = receiver.faults_served
    # The outage may be over before the new deliverer's first try (its backoff, a loaded
    # machine): its first three requests fail in any case, so it meets faults of its own.
    receiver.fail_next(["500", "timeout", "drop"])
    with registry.reading() as session:
        raised = [e for e in events(session, SPEC.id) if e.type == "alarm.raised"]
    assert len(raised) == 60
    try:
        wait_for(lambda: all(len(receiver.accepted(p)) == 60 for p in PATHS), 90,
                 "every event at both endpoints")
        wait_for(lambda: WebhookStore(registry).counts()["pending"] == 0, 30,
                 "the deliverer to record the last outcomes")
    finally:
        log.close()
    assert receiver.faults_served > served_before_restart, "the new deliverer met no fault"
    assert receiver.rejected == []
    expected = [e.id for e in raised]
    for path in PATHS:
        accepted = receiver.accepted(path)
        # Exactly the events raised, each once after deduplication, in their order.
        assert [int(b["sequence"]) for b in accepted.values()] == expected
        assert [b["data"]["alarm_id"] for b in accepted.values()] == [
            e.payload["alarm_id"] for e in raised]
    arrivals = sum(len(receiver.arrivals(p)) for p in PATHS)
    assert arrivals > 120  # retries happened, and each was a known webhook-id
    deliveries = WebhookStore(registry).deliveries(limit=1000)
    assert len(deliveries) == 120
    assert {d.state for d in deliveries} == {"delivered"}
    assert {d.message_id for d in deliveries} == set(receiver.accepted())
    retried = [d for d in deliveries if d.attempts > 1]
    assert retried, "no delivery was retried"
