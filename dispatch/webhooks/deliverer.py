"""The delivery loop, run by every dispatch worker (and by ``python -m dispatch webhooks``):

1. hand new outbox events to the subscriptions that want them (``fan_out``);
2. claim up to ``concurrency`` receivers with a delivery due, not claimed by another
   deliverer;
3. for each, on a pool of ``concurrency`` threads: send its pending deliveries in event
   order, stopping at the first that fails (nothing overtakes it), and write the outcomes
   and release the claim in one transaction.

A deliverer killed in the middle leaves its claims to run out (``claim_s``); deliveries it
sent but had not written are sent again, with the same ``webhook-id``: at least once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Final

from dispatch.registry.base import utc_now
from dispatch.registry.db import Registry
from dispatch.registry.webhook_queue import Claimed, Result, claim, fan_out, finish, release, take
from dispatch.registry.webhook_store import WebhookStore
from dispatch.settings import WebhookSettings
from dispatch.webhooks import metrics
from dispatch.webhooks.backoff import next_delay_s, retry_after_s
from dispatch.webhooks.payloads import render, route
from dispatch.webhooks.sender import Sender, SendOutcome
from dispatch.webhooks.signing import sign_headers
from dispatch.webhooks.targets import origin
from estate.errors import EstateError

log = logging.getLogger(__name__)

# The queue's gauges are refreshed at most this often: a count over the deliveries.
GAUGE_EVERY_S: Final = 5.0
# After an error of the registry, the loop waits this long before trying again.
ERROR_PAUSE_S: Final = 2.0


class Deliverer:
    """Sends webhook deliveries until stopped; several may run on one registry."""

    def __init__(self, registry: Registry, settings: WebhookSettings, worker: str, *,
                 sender: Sender | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._registry = registry
        self._settings = settings
        self._worker = worker
        self._sender = sender or Sender(settings)
        self._clock = clock
        self._pool = ThreadPoolExecutor(settings.concurrency,
                                        thread_name_prefix="webhook-send")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gauges_at = 0.0

    def run_once(self) -> int:
        """One round: fan-out, claims, sends; how many attempts were made."""
        now = self._clock()
        fan_out(self._registry, route, now)
        claimed = claim(self._registry, self._worker, now,
                        now + timedelta(seconds=self._settings.claim_s),
                        self._settings.concurrency)
        attempts = sum(self._pool.map(self._serve, claimed))
        self._refresh_gauges()
        return attempts

    def _serve(self, subscription_id: int) -> int:
        """Send a claimed receiver's due deliveries in order; the attempts made."""
        finished = False
        try:
            batch = take(self._registry, subscription_id, self._clock(), self._settings.batch)
            results = self._send(batch)
            metrics.DEAD.inc(finish(self._registry, self._worker, batch, results))
            finished = True
            return len(results)
        except Exception:
            log.exception("webhook subscription %d: sending failed", subscription_id)
            return 0
        finally:
            if not finished:
                try:
                    release(self._registry, self._worker, subscription_id)
                except EstateError:
                    log.warning("webhook subscription %d: claim not released (it runs out)",
                                subscription_id)

    def _send(self, batch: Claimed) -> list[Result]:
        subscription = batch.subscription
        # Half the claim: the claim never runs out while this deliverer still sends.
        deadline = time.monotonic() + self._settings.claim_s / 2
        results: list[Result] = []
        for pending in batch.deliveries:
            if self._stop.is_set() or time.monotonic() > deadline or not subscription.enabled:
                break
            try:
                body, content_type = render(pending.event, subscription.payload_format,
                                            pending.message_id)
                at = self._clock()
                headers = sign_headers(pending.message_id, at, body, batch.keys)
                headers["content-type"] = content_type
                sent = self._sender.post(subscription.url, headers, body)
            except Exception as exc:  # an event that cannot be rendered: logged, retried
                log.exception("webhook delivery %d: cannot be sent", pending.delivery_id)
                sent = SendOutcome("failed", None, 0.0, f"cannot be sent: {exc}"[:300])
            result = self._result(pending.delivery_id, pending.attempts + 1, sent)
            results.append(result)
            self._count(subscription.id, subscription.url, pending.message_id, result, sent)
            if result.outcome != "delivered" and result.next_attempt_at is not None:
                break  # order: nothing behind it goes before it
        return results

    def _result(self, delivery_id: int, attempts: int, sent: SendOutcome) -> Result:
        now = self._clock()
        next_at = None
        if sent.outcome != "delivered":
            delay = next_delay_s(attempts, self._settings,
                                 retry_after_s(sent.retry_after, now))
            next_at = None if delay is None else now + timedelta(seconds=delay)
        return Result(delivery_id, sent.outcome, now, sent.status_code,
                      round(sent.latency_ms, 3), sent.error, next_at)

    def _count(self, subscription_id: int, url: str, message_id: str, result: Result,
               sent: SendOutcome) -> None:
        dead = result.outcome != "delivered" and result.next_attempt_at is None
        metrics.DELIVERIES.labels("delivered" if result.outcome == "delivered"
                                  else "dead" if dead else "retried").inc()
        metrics.LATENCY.observe(sent.latency_ms / 1000.0)
        if result.outcome != "delivered":
            log.warning("webhook %s to subscription %d (%s): %s%s", message_id,
                        subscription_id, origin(url), result.error,
                        "; dead" if dead else f"; next try at {result.next_attempt_at}")

    def _refresh_gauges(self) -> None:
        if time.monotonic() - self._gauges_at < GAUGE_EVERY_S:
            return
        self._gauges_at = time.monotonic()
        counts = WebhookStore(self._registry).counts()
        metrics.QUEUE_DEPTH.set(counts["pending"])
        metrics.DEAD.set(counts["dead"])

    def run(self) -> None:
        """Loop until ``stop``: rounds back to back while there is work, else a pause."""
        while not self._stop.is_set():
            try:
                busy = self.run_once() > 0
            except EstateError as exc:
                log.warning("webhook deliverer: %s", exc)
                self._stop.wait(ERROR_PAUSE_S)
                continue
            except Exception:  # a bug must not end deliveries: logged, tried again
                log.exception("webhook deliverer: round failed")
                self._stop.wait(ERROR_PAUSE_S)
                continue
            if not busy:
                self._stop.wait(self._settings.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="webhook-deliverer",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the sends in hand (each bounded by its timeouts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=True)
        self._sender.close()
