"""One delivery's POST: the target checked (after DNS, and again on every redirect), the
request sent to the checked address, connect and read timeouts, at most a few KiB of the
answer read. Transport errors become an outcome here, never an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin

import httpx

from dispatch.settings import WebhookSettings
from dispatch.webhooks.targets import (
    Resolver,
    TargetPolicy,
    TargetRefused,
    TargetUnresolved,
    check_url,
    origin,
    system_resolver,
)

log = logging.getLogger(__name__)

# What is read of a receiver's answer: enough for an error message, never a large body.
MAX_ANSWER_BYTES: Final = 2048
# What of it is kept in the delivery log.
MAX_ANSWER_KEPT: Final = 200
# One client (one connection pool) per receiver host: a connection made to a checked
# address for one host name is never reused for another. At most this many are kept.
MAX_CLIENTS: Final = 64
REDIRECTS: Final = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    outcome: str  # delivered, failed, refused
    status_code: int | None
    latency_ms: float
    error: str | None
    retry_after: str | None = None


class Sender:
    """Posts deliveries; thread-safe."""

    def __init__(self, settings: WebhookSettings, resolve: Resolver = system_resolver) -> None:
        self._settings = settings
        self._policy = TargetPolicy(settings.allow_loopback, settings.allow_private)
        self._resolve = resolve
        self._timeout = httpx.Timeout(connect=settings.connect_timeout_s,
                                      read=settings.read_timeout_s,
                                      write=settings.read_timeout_s,
                                      pool=settings.connect_timeout_s)
        self._clients: OrderedDict[tuple[str, str, int], httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def _client(self, scheme: str, host: str, port: int) -> httpx.Client:
        key = (scheme, host, port)
        with self._lock:
            client = self._clients.pop(key, None)
            if client is None:
                # trust_env off: no proxy from the environment between us and a checked
                # address; redirects are followed by hand, each target checked.
                client = httpx.Client(timeout=self._timeout, follow_redirects=False,
                                      trust_env=False)
            self._clients[key] = client
            while len(self._clients) > MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                old.close()
            return client

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> SendOutcome:
        """POST ``body`` to ``url``, following up to ``max_redirects`` redirects."""
        started = time.perf_counter()

        def done(outcome: str, status: int | None, error: str | None,
                 retry_after: str | None = None) -> SendOutcome:
            return SendOutcome(outcome, status, (time.perf_counter() - started) * 1000.0,
                               error, retry_after)

        for hop in range(self._settings.max_redirects + 1):
            prefix = "" if hop == 0 else f"redirect {hop} to "
            try:
                target = check_url(url, self._policy, self._resolve)
            except TargetRefused as exc:
                return done("refused", None, prefix + exc.reason)
            except TargetUnresolved as exc:
                return done("failed", None, prefix + str(exc))
            pinned = httpx.URL(url).copy_with(host=target.address)
            host_header = target.host if target.port == {"http": 80, "https": 443}[
                target.scheme] else f"{target.host}:{target.port}"
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            try:
                with self._client(target.scheme, target.host, target.port).stream(
                        "POST", pinned, content=body, extensions=extensions,
                        headers={**headers, "host": host_header,
                                 "user-agent": "estate-dispatch-webhooks"}) as answer:
                    excerpt = _read_some(answer)
                    status = answer.status_code
                    location = answer.headers.get("location")
                    retry_after = answer.headers.get("retry-after")
            except httpx.TimeoutException as exc:
                return done("failed", None, f"{prefix}{origin(url)}: timed out "
                            f"({type(exc).__name__})")
            except httpx.HTTPError as exc:
                return done("failed", None, f"{prefix}{origin(url)}: "
                            f"{type(exc).__name__}: {str(exc)[:200]}")
            if 200 <= status < 300:
                return done("delivered", status, None)
            if status in REDIRECTS and location:
                url = urljoin(url, location)
                continue
            text = excerpt.decode("utf-8", "replace")[:MAX_ANSWER_KEPT]
            return done("failed", status, f"{prefix}HTTP {status}" + (f": {text}" if text
                                                                        else ""),
                        retry_after)
        return done("failed", None, f"more than {self._settings.max_redirects} redirects")

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _read_some(answer: httpx.Response) -> bytes:
    """At most ``MAX_ANSWER_BYTES`` of the answer's body; the rest is not read."""
    kept = bytearray()
    for chunk in answer.iter_raw():
        kept += chunk[:MAX_ANSWER_BYTES - len(kept)]
        if len(kept) >= MAX_ANSWER_BYTES:
            break
    return bytes(kept)
