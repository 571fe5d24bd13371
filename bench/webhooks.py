"""Webhook deliveries: throughput to a local receiver, and the delay from an event written
to the outbox to its webhook received, while ingest carries about 100,000 readings/s.

1. throughput: ``--events`` alarms raised (outbox events) for ``--endpoints`` subscriptions
   on one local receiver (a process of its own, on loopback, verifying every signature
   with the ``standardwebhooks`` reference verifier); one deliverer with the default
   settings (``concurrency`` = endpoints) sends them all: deliveries/s from its start until
   the registry holds every delivery as delivered;
2. end to end: an alarm raised every ``--interval-s`` (written to the registry with its
   outbox event, as the alarm board does) while Mosquitto, InfluxDB, ingest and a
   publisher carry ``--ingest-rate`` readings/s (bench/ingest.py's load: 50 readings a
   message, 10,000 meters, QoS 1); p50 and p99 of written -> received at the receiver.
   The worker that turns MQTT readings into alarms is not wired yet, so the chain starts
   at the outbox, not at the MQTT publication.

The registry is an SQLite file (``--registry-url`` for PostgreSQL). Usage:
    .venv/bin/python bench/webhooks.py [--events 3000] [--endpoints 4] [--no-load]
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatch.alarms.model import AlarmTransition  # noqa: E402
from dispatch.registry.alarm_board import record_transitions  # noqa: E402
from dispatch.registry.db import Registry  # noqa: E402
from dispatch.registry.loader import load_estate_into  # noqa: E402
from dispatch.registry.outbox import pending_events  # noqa: E402
from dispatch.registry.webhook_store import WebhookStore  # noqa: E402
from dispatch.settings import WebhookSettings  # noqa: E402
from dispatch.webhooks.deliverer import Deliverer  # noqa: E402
from dispatch.webhooks.manage import add_subscription  # noqa: E402
from estate.model import SAMPLE_ESTATE, load_estate  # noqa: E402
from launcher.servers import free_port  # noqa: E402

SPEC = load_estate(SAMPLE_ESTATE)


def _ingest_bench() -> Any:
    """bench/ingest.py, imported by its package name so that the processes it spawns can
    import it too."""
    return importlib.import_module("bench.ingest")


def receiver_main(port: int, secrets: dict[str, str], ready: Any) -> None:
    """The receiver: verifies each delivery, answers 204, keeps the arrival times."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    hooks = {path: Webhook(secret) for path, secret in secrets.items()}
    arrivals: dict[str, tuple[float, Any]] = {}
    bad: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            at = time.monotonic()
            try:
                event = hooks[self.path].verify(body, dict(self.headers.items()))
            except (KeyError, WebhookVerificationError) as exc:
                with lock:
                    bad.append(repr(exc))
                self._answer(401, b"")
                return
            with lock:
                arrivals.setdefault(self.headers["webhook-id"],
                                    (at, event["data"].get("alarm_id")))
            self._answer(204, b"")

        def do_GET(self) -> None:
            with lock:
                body = orjson.dumps({"arrivals": arrivals, "bad": bad})
            self._answer(200, body)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


class Receiver:
    def __init__(self, secrets: dict[str, str], port: int) -> None:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self.port = port
        self.process = ctx.Process(target=receiver_main, args=(port, secrets, ready),
                                   daemon=True)
        self.process.start()
        if not ready.wait(30):
            raise RuntimeError("the receiver did not start")

    def state(self) -> dict[str, Any]:
        return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=30).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def _registry(url: str | None, work: Path, name: str) -> Registry:
    registry = Registry(url or f"sqlite:///{work / name}.sqlite")
    registry.migrate()
    load_estate_into(registry, SPEC)
    return registry


def _subscribe(registry: Registry, settings: WebhookSettings, port: int,
               paths: list[str]) -> dict[str, str]:
    secrets = {}
    for path in paths:
        _, secret = add_subscription(WebhookStore(registry), settings, estate_id=SPEC.id,
                                     name=path, url=f"http://127.0.0.1:{port}{path}",
                                     event_filter={"types": ["alarm.raised"]})
        secrets[path] = secret
    return secrets


def raise_alarms(registry: Registry, first: int, count: int) -> list[int]:
    at_ms = int(datetime.now(UTC).timestamp() * 1000)
    with registry.writing() as session:
        changes = record_transitions(session, SPEC.id, [
            AlarmTransition("raise", f"textile/bench-{n}", "voltage-band", "band", "high",
                            250.0, f"bench alarm {n}", at_ms) for n in range(first, first + count)])
    return [c.record.id for c in changes if c.record is not None]


def _idle(registry: Registry) -> bool:
    with registry.reading() as session:
        waiting = pending_events(session, limit=1)
    return not waiting and WebhookStore(registry).counts()["pending"] == 0


def throughput(args: argparse.Namespace, work: Path) -> tuple[float, int, float]:
    settings = WebhookSettings(allow_loopback=True, concurrency=args.endpoints)
    registry = _registry(args.registry_url, work, "throughput")
    port = free_port()
    paths = [f"/r{n}" for n in range(args.endpoints)]
    receiver = Receiver(_subscribe(registry, settings, port, paths), port)
    for first in range(0, args.events, 500):
        raise_alarms(registry, first, min(500, args.events - first))
    deliverer = Deliverer(registry, settings, "bench")
    start = time.monotonic()
    deliverer.start()
    try:
        while not _idle(registry):
            time.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        deliverer.stop()
    state = receiver.state()
    receiver.stop()
    counts = WebhookStore(registry).counts()
    registry.close()
    total = args.events * args.endpoints
    if counts["delivered"] != total or len(state["arrivals"]) != total or state["bad"]:
        raise RuntimeError(f"delivered {counts}, received {len(state['arrivals'])}, "
                           f"refused signatures {len(state['bad'])}")
    return total / elapsed, total, elapsed


def _load(args: argparse.Namespace, work: Path, result: dict[str, Any],
          started: threading.Event) -> None:
    broker = influx = None
    try:
        ingest = _ingest_bench()
        broker = ingest.Mosquitto(work / "mosquitto")
        influx = ingest.InfluxDB(work / "influxdb")
        broker.start()
        influx.start()
        rate = args.ingest_rate / 50
        messages = int(rate * args.load_s)
        base_ms = (time.time_ns() // 1_000_000) - 3 * 3600 * 1000
        items = ingest.payloads(10_000, messages, 50, base_ms)
        servers = {"mosquitto": broker.process.pid, "influxd": influx.process.pid}
        started.set()
        run = ingest.run_ingest(broker.port, influx.url, items, messages * 50, work, servers,
                                rate=rate)
        result["readings_per_s"] = run.readings_per_s
    except Exception as exc:
        result["error"] = repr(exc)
        started.set()
    finally:
        for server in (broker, influx):
            if server is not None:
                server.stop()


def end_to_end(args: argparse.Namespace, work: Path) -> tuple[list[float], dict[str, Any]]:
    settings = WebhookSettings(allow_loopback=True)  # the defaults: poll every 0.2 s
    registry = _registry(args.registry_url, work, "e2e")
    port = free_port()
    receiver = Receiver(_subscribe(registry, settings, port, ["/alerts"]), port)
    deliverer = Deliverer(registry, settings, "bench-e2e")
    deliverer.start()
    load: dict[str, Any] = {}
    loader = None
    if not args.no_load:
        started = threading.Event()
        loader = threading.Thread(target=_load, args=(args, work, load, started))
        loader.start()
        started.wait(600)
        # run_ingest waits for ingest's readiness, then a second before publishing.
        time.sleep(4.0)
    written: dict[int, float] = {}
    try:
        for n in range(args.probes):
            [alarm_id] = raise_alarms(registry, 100_000 + n, 1)
            written[alarm_id] = time.monotonic()
            time.sleep(args.interval_s)
        deadline = time.monotonic() + 60
        while len(receiver.state()["arrivals"]) < args.probes:
            if time.monotonic() > deadline:
                raise RuntimeError("not every probe arrived in 60 s")
            time.sleep(0.2)
    finally:
        deliverer.stop()
    state = receiver.state()
    receiver.stop()
    registry.close()
    if loader is not None:
        loader.join(900)
    latencies = [(at - written[alarm]) * 1000 for at, alarm in state["arrivals"].values()]
    return latencies, load


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--probes", type=int, default=150)
    parser.add_argument("--interval-s", type=float, default=0.1)
    parser.add_argument("--ingest-rate", type=float, default=100_000)
    parser.add_argument("--load-s", type=float, default=22.0)
    parser.add_argument("--no-load", action="store_true", help="end to end without ingest")
    parser.add_argument("--registry-url", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="estate-bench-webhooks-"))
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; registry "
          f"{args.registry_url or 'SQLite file'}")
    rate, total, elapsed = throughput(args, work)
    print(f"deliveries to a local receiver:  {rate:>8,.0f} /s ({total:,} deliveries to "
          f"{args.endpoints} endpoints in {elapsed:.1f} s, every signature verified)")
    latencies, load = end_to_end(args, work)
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    flowing = (f"while ingest carried {load['readings_per_s']:,.0f} readings/s"
               if "readings_per_s" in load else
               f"ingest load failed: {load['error']}" if "error" in load else "no ingest load")
    print(f"outbox event written -> webhook received, {len(latencies)} probes, {flowing}: "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies):.0f} ms "
          f"(mean {statistics.mean(latencies):.0f} ms)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    for name, ok in [("deliveries/s >= 500", rate >= 500), ("p99 <= 2 s", p99 <= 2000)]:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
