"""bench/web.py's browser part: many pages open on the live stream in Debian's chromium
(driven by Playwright, no browser download), and the time from an MQTT publication to
its value shown in each page, beside the broker's own round trip for the same probes."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from adapters.mqtt import MqttConnection
from bench.web_estate import ESTATE, PROBE_METER, pack
from estate.ports import InboundMessage
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId

CHROMIUM = "/usr/bin/chromium"
# The test suite's flags, and no throttling of pages that are not in front: every page
# must be as live as the one an operator looks at.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]


@dataclass
class ProbeResult:
    latencies_s: list[float] = field(default_factory=list)  # publish -> shown, every page
    missed: int = 0  # (page, probe) pairs never shown
    broker_s: list[float] = field(default_factory=list)  # publish -> a plain subscriber
    pages: int = 0
    contexts: int = 0


def session_cookie(url: str, username: str, password: str) -> str:
    with httpx.Client(base_url=url, timeout=60) as client:
        answer = client.post("/api/session", json={"username": username,
                                                   "password": password})
        answer.raise_for_status()
        return client.cookies["estate_session"]


def open_pages(browser: Browser, url: str, login: tuple[str, str], pages: int,
               per_context: int) -> tuple[list[BrowserContext], list[Page]]:
    """``pages`` probe pages, ``per_context`` to a browser context, each context logged
    in with a session of its own (a session holds at most 4 live streams)."""
    contexts, opened = [], []
    host = url.split("//")[1].split(":")[0]
    target = (f"{url}/static/live-probe.html?meter={PROBE_METER[0]}/{PROBE_METER[1]}"
              "&quantity=power")
    for _ in range(math.ceil(pages / per_context)):
        context = browser.new_context(viewport={"width": 400, "height": 300})
        context.add_cookies([{"name": "estate_session", "value": session_cookie(url, *login),
                              "domain": host, "path": "/"}])
        contexts.append(context)
        for _ in range(min(per_context, pages - len(opened))):
            page = context.new_page()
            page.goto(target)
            opened.append(page)
    for page in opened:  # every stream open (its first event in) before any probe
        page.wait_for_function("() => window.probeEvents > 0", timeout=120_000)
    return contexts, opened


class BrokerWatch:
    """A plain subscriber to the probe meter: the broker's own round trip."""

    def __init__(self, port: int) -> None:
        self.seen: dict[float, float] = {}
        self._lock = threading.Lock()
        self.connection = MqttConnection(MqttSettings(port=port),
                                         f"bench-watch-{uuid.uuid4().hex[:8]}")
        topic = DeviceId(ESTATE, *PROBE_METER).topic(Channel.TELEMETRY)
        self.connection.subscribe(topic, self._on, qos=1)
        self.connection.connect()
        self.connection.wait_subscribed(10)

    def _on(self, message: InboundMessage) -> None:
        at = time.time()
        for record in orjson.loads(message.payload):
            if "v" in record:
                with self._lock:
                    self.seen[float(record["v"])] = at


def probe(pages: list[Page], mqtt_port: int, probes: int, interval_s: float,
          result: ProbeResult) -> None:
    """Publish ``probes`` distinct values of the probe meter, ``interval_s`` apart; then
    read from every page when it showed each."""
    watch = BrokerWatch(mqtt_port)
    client = MqttConnection(MqttSettings(port=mqtt_port), f"bench-probe-{uuid.uuid4().hex[:8]}")
    client.connect()
    sent: dict[float, float] = {}
    try:
        for k in range(probes):
            # Distinct, exact in binary, and within what a meter may report (the codec
            # refuses implausible power).
            value = 1000.0 + k * 0.25
            topic, payload = pack(*PROBE_METER, "power", value)
            sent[value] = time.time()
            client.publish(topic, payload, qos=1)
            # Not in step with the view's ticks: each probe lands anywhere in a tick.
            time.sleep(random.uniform(0.5, 1.5) * interval_s)
        time.sleep(2.0)  # the last probe's way to every page, with room to spare
    finally:
        client.close()
        watch.connection.close()
    for value, at in sent.items():
        if value in watch.seen:
            result.broker_s.append(watch.seen[value] - at)
    values = list(sent)
    for page in pages:
        shown: list[Any] = page.evaluate(
            "values => values.map(v => window.probeSeen.get(v) ?? null)", values)
        for value, at_ms in zip(values, shown, strict=True):
            if at_ms is None:
                result.missed += 1
            else:
                result.latencies_s.append(at_ms / 1000 - sent[value])


def run_pages(url: str, login: tuple[str, str], mqtt_port: int, pages: int, per_context: int,
              probes: int, interval_s: float,
              while_open: Callable[[], None] | None = None) -> ProbeResult:
    """Open the pages, probe them, and run ``while_open`` (more measurements) before
    closing them."""
    result = ProbeResult(pages=pages, contexts=math.ceil(pages / per_context))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            started = time.monotonic()
            contexts, opened = open_pages(browser, url, login, pages, per_context)
            print(f"  {len(opened)} pages open in {len(contexts)} browser contexts in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            probe(opened, mqtt_port, probes, interval_s, result)
            if while_open is not None:
                while_open()
            for context in contexts:
                context.close()
        finally:
            browser.close()
    return result
