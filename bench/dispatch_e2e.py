"""The control room end to end, under ingest's load: a reading published on MQTT ->
the dispatch worker's streaming rules -> the alarm stored in the registry with its event
in the outbox, p50 and p99, while ingest carries about 100,000 readings/s of another
estate's telemetry through the same Mosquitto and InfluxDB on the same machine.

Starts its own Mosquitto and InfluxDB (as the tests do), an ingest process, and the
dispatch worker (``python -m dispatch worker``, registry in an SQLite file) on the sample
estate with the cold room's threshold judged at once (``for_s`` 0). A load process
publishes gateway batches (50 readings a message) of 10,000 meters of estate ``bench`` at
``--rate`` readings/s; the probe publishes the cold room's temperature above its limit,
waits until the registry holds the alarm active and its ``alarm.raised`` event and until
the worker's webhook deliverer has delivered that event, signed, to a local receiver
subscribed to ``alarm.raised`` (``bench/webhooks.py``'s receiver, which verifies every
signature), then below (cleared), and again. The worker subscribes to its own estate's
telemetry only, so the load reaches it as it reaches the broker and the machine, not its
evaluator; ingest's rate is read from its own counter over the probing time.

Usage: .venv/bin/python bench/dispatch.py --parts e2e [--probes 60] [--rate 100000]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.mqtt import MqttConnection  # noqa: E402
from adapters.ops_http import wait_healthy  # noqa: E402
from bench.ingest import _metric, payloads  # noqa: E402
from dispatch.registry import alarm_board, outbox  # noqa: E402
from dispatch.registry.db import Registry  # noqa: E402
from dispatch.registry.webhook_store import WebhookStore  # noqa: E402
from dispatch.settings import WebhookSettings  # noqa: E402
from dispatch.webhooks.manage import add_subscription  # noqa: E402
from estate.model import SAMPLE_ESTATE  # noqa: E402
from estate.readings import Reading  # noqa: E402
from estate.senml import encode_readings  # noqa: E402
from estate.settings import MqttSettings  # noqa: E402
from estate.topics import Channel, DeviceId  # noqa: E402
from launcher.servers import InfluxDB, Mosquitto, free_port  # noqa: E402

TARGET_P99_S = 1.0
# Reading published -> webhook received (the webhooks issue's end to end).
TARGET_WEBHOOK_P99_S = 2.0
PROBE = DeviceId("demo", "foods", "coldroom-temp")
RULE = "coldroom-warm"
# Readings a load message carries: a gateway's batch, as in bench/ingest.py.
PER_MESSAGE = 50
# Distinct load messages, published in turn: 1,000,000 readings (50 MB) generated once.
LOAD_MESSAGES = 20_000


def _estate(directory: Path) -> Path:
    data = yaml.safe_load(SAMPLE_ESTATE.read_text(encoding="utf-8"))
    data["alarm_rules"] = [r for r in data.get("alarm_rules", []) if r["id"] != RULE] + [
        {"id": RULE, "kind": "threshold", "meter": "foods/coldroom-temp",
         "quantity": "temperature", "high": 8, "hysteresis": 1, "for_s": 0,
         "severity": "critical", "name": "Cold room warming (food safety)"}]
    path = directory / "estate.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _load(port: int, rate: float, stop: Any, sent: Any) -> None:
    """Publish the load at ``rate`` readings/s until ``stop`` is set."""
    items = payloads(10_000, LOAD_MESSAGES, PER_MESSAGE, time.time_ns() // 1_000_000 - 3_600_000)
    client = MqttConnection(MqttSettings(port=port), f"load-{uuid.uuid4().hex[:8]}")
    client.connect()
    start = time.monotonic()
    k = 0
    while not stop.is_set():
        topic, payload = items[k % len(items)]
        client.publish(topic, payload, qos=0)
        k += 1
        sent.value = k * PER_MESSAGE
        delay = start + k * PER_MESSAGE / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.close()


def _process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_state(registry: Registry, state: str, since: int, timeout_s: float = 30) -> float:
    """Poll the registry until the probe's alarm is active (``raised``) or not
    (``cleared``), with its event; the monotonic time it was seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with registry.reading() as session:
            active = [a for a in alarm_board.active_alarms(session, "demo")
                      if a.alarm.rule_id == RULE]
            if (state == "raised") == bool(active):
                events = [e for e in outbox.events(session, "demo", limit=100_000)
                          if e.type == f"alarm.{state}" and e.id > since]
                if events:
                    return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError(f"the probe's alarm was not {state} within {timeout_s:.0f} s")


def _last_event_id(registry: Registry) -> int:
    with registry.reading() as session:
        events = outbox.events(session, "demo", limit=100_000)
    return max((e.id for e in events), default=0)


def _arrivals(receiver: Any) -> list[float]:
    return sorted(at for at, _ in receiver.state()["arrivals"].values())


def _wait_delivered(receiver: Any, known: int, timeout_s: float = 30) -> float:
    """Poll the receiver until a delivery beyond the ``known`` ones has arrived; the
    monotonic time it arrived (the receiver's clock is the same system-wide clock)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        arrivals = _arrivals(receiver)
        if len(arrivals) > known:
            return arrivals[known]
        time.sleep(0.01)
    raise RuntimeError(f"the probe's alarm.raised was not delivered within {timeout_s:.0f} s")


def _probe(mqtt_port: int, registry: Registry, probes: int,
           receiver: Any) -> tuple[list[float], list[float]]:
    """Per raising probe: published -> alarm with its event in the registry, and
    published -> the event received by the webhook receiver."""
    client = MqttConnection(MqttSettings(port=mqtt_port), f"probe-{uuid.uuid4().hex[:8]}")
    client.connect()
    latencies, delivered = [], []
    try:
        for k in range(2 * probes):
            raise_ = k % 2 == 0
            since = _last_event_id(registry)
            known = len(_arrivals(receiver))
            reading = Reading("demo", PROBE.facility, PROBE.device, "temperature", "",
                              9.5 if raise_ else 5.0, time.time_ns() // 1_000_000)
            sent = time.monotonic()
            client.publish(PROBE.topic(Channel.TELEMETRY), encode_readings(PROBE, [reading]),
                           qos=1)
            seen = _wait_state(registry, "raised" if raise_ else "cleared", since)
            if raise_:
                latencies.append(seen - sent)
                delivered.append(_wait_delivered(receiver, known) - sent)
            time.sleep(0.05)
    finally:
        client.close()
    return latencies, delivered


def _subscribe(registry: Registry, port: int) -> dict[str, str]:
    """The receiver subscribed to the sample estate's raised alarms; its secret."""
    _, secret = add_subscription(WebhookStore(registry), WebhookSettings(allow_loopback=True),
                                 estate_id="demo", name="bench", url=f"http://127.0.0.1:{port}/alerts",
                                 event_filter={"types": ["alarm.raised"]})
    return {"/alerts": secret}


def end_to_end(probes: int, rate: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    mosquitto, influx = Mosquitto(work / "mosquitto"), InfluxDB(work / "influxdb")
    mosquitto.start()
    influx.start()
    registry_url = f"sqlite:///{work / 'registry.sqlite'}"
    ingest_port, worker_port = free_port(), free_port()
    base = dict(os.environ, ESTATE_LOG_LEVEL="WARNING")
    ingest = _process([sys.executable, "-m", "ingest"], dict(
        base, INGEST_MQTT__PORT=str(mosquitto.port), INGEST_INFLUX__URL=influx.url,
        INGEST_INFLUX__DATABASE="bench", INGEST_CLIENT_ID=f"bench-{uuid.uuid4().hex[:6]}",
        INGEST_SPOOL_DIR=str(work / "spool"), INGEST_HTTP_PORT=str(ingest_port)),
        work / "ingest.log")
    worker = _process([sys.executable, "-m", "dispatch", "worker"], dict(
        base, DISPATCH_MQTT__PORT=str(mosquitto.port), DISPATCH_INFLUX__URL=influx.url,
        DISPATCH_INFLUX__DATABASE="bench", DISPATCH_REGISTRY_URL=registry_url,
        DISPATCH_ESTATE_FILE=str(_estate(work)), DISPATCH_HTTP_PORT=str(worker_port),
        # Not what is measured: the plan, forecasts and rollups once a day (the rollups
        # would otherwise roll up the whole load every minute).
        DISPATCH_PLANNING__EVERY_S="86400", DISPATCH_FORECAST__EVERY_S="86400",
        DISPATCH_ROLLUPS__EVERY_S="86400", DISPATCH_WEBHOOKS__ALLOW_LOOPBACK="true"),
        work / "worker.log")
    ctx = mp.get_context("spawn")
    stop, sent = ctx.Event(), ctx.Value("d", 0.0)
    load = ctx.Process(target=_load, args=(mosquitto.port, rate, stop, sent))
    registry = Registry(registry_url)
    receiver = None
    try:
        if wait_healthy(f"http://127.0.0.1:{ingest_port}/health", 60) is None:
            raise RuntimeError("ingest did not become ready")
        _wait_active(worker_port)
        from bench.webhooks import Receiver
        receiver_port = free_port()
        receiver = Receiver(_subscribe(registry, receiver_port), receiver_port)
        load.start()
        time.sleep(5.0)  # the load at its rate before the first probe
        written_before, began = _metric(ingest_port, "ingest_readings_written_total"), \
            time.monotonic()
        latencies, delivered = _probe(mosquitto.port, registry, probes, receiver)
        written = _metric(ingest_port, "ingest_readings_written_total") - written_before
        ingest_rate = written / (time.monotonic() - began)
        bad = receiver.state()["bad"]
        _report(latencies, delivered, ingest_rate, rate, bad)
    finally:
        stop.set()
        load.join(30)
        for proc in (worker, ingest):
            proc.terminate()
            proc.wait(60)
        if receiver is not None:
            receiver.stop()
        registry.close()
        mosquitto.stop()
        influx.stop()


def _wait_active(port: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = wait_healthy(f"http://127.0.0.1:{port}/health", 10) or {}
        if body.get("lease_held") and body.get("telemetry_subscribed"):
            return
        time.sleep(0.2)
    raise RuntimeError("the dispatch worker did not take the lease and subscribe")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(latencies: list[float], delivered: list[float], ingest_rate: float, rate: float,
            bad: list[str]) -> None:
    p50, p99 = _pct(latencies, 0.5), _pct(latencies, 0.99)
    verdict = "PASS" if p99 <= TARGET_P99_S else "FAIL"
    print(f"end to end: reading published -> alarm in the registry with its event, "
          f"{len(latencies)} probes")
    print(f"    p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, worst "
          f"{max(latencies) * 1000:.0f} ms (target p99 <= {TARGET_P99_S * 1000:.0f} ms) "
          f"{verdict}")
    w50, w99 = _pct(delivered, 0.5), _pct(delivered, 0.99)
    verdict = "PASS" if w99 <= TARGET_WEBHOOK_P99_S and not bad else "FAIL"
    print(f"end to end: reading published -> alarm -> signed webhook received, "
          f"{len(delivered)} probes, {len(bad)} signatures refused")
    print(f"    p50 {w50 * 1000:.0f} ms, p99 {w99 * 1000:.0f} ms, worst "
          f"{max(delivered) * 1000:.0f} ms (target p99 <= {TARGET_WEBHOOK_P99_S * 1000:.0f} ms) "
          f"{verdict}")
    print(f"    meanwhile ingest wrote {ingest_rate:,.0f} readings/s of another estate "
          f"(load offered: {rate:,.0f} readings/s)")
