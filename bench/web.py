"""The operators' view under load (issue 12, acceptance 3): the overview API with 1,000
facilities, a 31-day trend of one meter, and a reading published on MQTT seen in 200
open pages.

Starts Mosquitto, InfluxDB and an SQLite registry; writes a synthetic estate of
``--facilities`` tenants (bench/web_estate.py), a month of one meter's readings straight
to InfluxDB with the rollup job run over them, and a few active alarms; runs the web view
as a process of its own (``python -m dispatch web``, uvicorn) while every meter of the
estate reports over MQTT at ``--meter-rate`` messages/s; then measures, each beside its
target and a reference taken in the same run:

1. ``GET /api/overview``, ``--overview-requests`` from ``--concurrency`` logged-in clients
   (reference: ``GET /api/session``, the cheapest logged-in route: HTTP plus the session);
2. ``GET /api/trend`` over 31 days (reference: InfluxDB itself, the same aggregation over
   the raw readings, and the rollup query the view makes);
3. ``--pages`` live pages (``/static/live-probe.html``) in Debian's chromium, 4 to a
   browser context (a session holds at most 4 live streams), each logged in: a value
   published on MQTT -> shown in every page, ``--probes`` values (reference: a plain MQTT
   subscriber's round trip for the same publications); then the overview again with the
   pages open.

Usage:
    .venv/bin/python bench/web.py [--facilities 1000] [--pages 200] [--probes 40]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.influxdb_v1 import InfluxV1Store  # noqa: E402
from bench import web_estate  # noqa: E402
from bench.web_pages import run_pages, session_cookie  # noqa: E402
from dispatch.accounts.roles import Role  # noqa: E402
from dispatch.registry.account_desk import add_user  # noqa: E402
from dispatch.registry.db import Registry  # noqa: E402
from dispatch.registry.loader import load_estate_into  # noqa: E402
from estate.model import load_estate  # noqa: E402
from estate.settings import InfluxSettings  # noqa: E402
from launcher.servers import InfluxDB, Mosquitto, free_port  # noqa: E402

USER, PASSWORD = "bench", "bench-password-not-secret"
TARGETS = {"overview": 0.100, "trend": 0.500, "page": 1.0}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def line(name: str, values: list[float], target: float | None = None) -> str:
    if not values:
        return f"  {name}: no samples"
    text = (f"  {name}: p50 {pct(values, 50) * 1000:.1f} ms, p95 {pct(values, 95) * 1000:.1f}"
            f" ms, max {max(values) * 1000:.1f} ms ({len(values)} samples)")
    if target is not None:
        verdict = "meets" if pct(values, 95) <= target else "MISSES"
        text += f"  [target p95 <= {target * 1000:.0f} ms: {verdict}]"
    return text


def timed_gets(url: str, path: str, params: dict[str, str] | None, requests: int,
               concurrency: int, cookie: str) -> list[float]:
    """``requests`` GETs of ``path`` from ``concurrency`` clients; each one's seconds."""
    out: list[float] = []
    lock = threading.Lock()
    per = max(1, requests // concurrency)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60, cookies={"estate_session": cookie}) as c:
            c.get(path, params=params).raise_for_status()  # the connection, warmed
            for _ in range(per):
                started = time.perf_counter()
                c.get(path, params=params).raise_for_status()
                took = time.perf_counter() - started
                with lock:
                    out.append(took)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def influx_reference(influx_url: str, start_ms: int, end_ms: int,
                     requests: int) -> tuple[list[float], list[float]]:
    """InfluxDB itself over the same month: the 45-minute min/mean/max from the raw
    readings, and the same from the quarter-hour rollups (what the view asks)."""
    facility, device = web_estate.TREND_METER
    span = f"time >= {start_ms}ms AND time < {end_ms}ms"
    raw = (f'SELECT min("power"), mean("power"), max("power") FROM "reading" WHERE '
           f"\"facility\" = '{facility}' AND \"device\" = '{device}' AND {span} "
           "GROUP BY time(45m) fill(none)")
    rolled = (f'SELECT min("min"), sum("sum"), sum("count"), max("max") FROM '
              f'"bench"."rollup_long"."reading_15m" WHERE "facility" = \'{facility}\' AND '
              f"\"device\" = '{device}' AND \"quantity\" = 'power' AND {span} "
              "GROUP BY time(45m) fill(none)")
    times: tuple[list[float], list[float]] = ([], [])
    with httpx.Client(base_url=influx_url, timeout=60) as client:
        for query, into in ((raw, times[0]), (rolled, times[1])):
            for _ in range(requests):
                started = time.perf_counter()
                client.get("/query", params={"db": "bench", "q": query}).raise_for_status()
                into.append(time.perf_counter() - started)
    return times


def start_web(work: Path, mosquitto: Mosquitto, influx: InfluxDB, estate: Path,
              registry_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, ESTATE_LOG_LEVEL="WARNING",
               DISPATCH_MQTT__PORT=str(mosquitto.port), DISPATCH_INFLUX__URL=influx.url,
               DISPATCH_INFLUX__DATABASE="bench", DISPATCH_INFLUX__RAW_RETENTION="40d",
               DISPATCH_REGISTRY_URL=registry_url, DISPATCH_ESTATE_FILE=str(estate),
               DISPATCH_WEB__PORT=str(port))
    with (work / "web.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "dispatch", "web"], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"the web view did not become healthy: see {work / 'web.log'}")


def prepare(work: Path, influx: InfluxDB, facilities: int) -> tuple[Path, str, int, int]:
    estate = web_estate.estate_file(work, facilities)
    spec = load_estate(estate)
    registry_url = f"sqlite:///{work / 'registry.sqlite'}"
    registry = Registry(registry_url)
    registry.migrate()
    load_estate_into(registry, spec)
    add_user(registry, USER, PASSWORD, Role.VIEWER)
    alarms = web_estate.raise_alarms(registry, facilities)
    registry.close()
    store = InfluxV1Store(InfluxSettings(url=influx.url, database="bench",
                                         raw_retention="40d"))
    store.ensure_database()
    end_ms = time.time_ns() // 1_000_000
    started = time.perf_counter()
    start_ms, end_ms, written = web_estate.write_month(store, end_ms)
    print(f"  {written:,} readings of {'/'.join(web_estate.TREND_METER)} over 31 days written "
          f"in {time.perf_counter() - started:.1f} s; {alarms} active alarms", flush=True)
    took = web_estate.roll_up(store, start_ms, end_ms)
    print("  rollup job over the month: " + ", ".join(
        f"{name} {s:.1f} s" for name, s in took.items()), flush=True)
    store.close()
    return estate, registry_url, start_ms, end_ms


def measure_http(url: str, influx_url: str, cookie: str, args: argparse.Namespace,
                 span: tuple[int, int], label: str) -> dict[str, list[float]]:
    start_ms, end_ms = span
    iso = {"start": datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(),
           "end": datetime.fromtimestamp(end_ms / 1000, UTC).isoformat()}
    facility, meter = web_estate.TREND_METER
    trend_params = {"facility": facility, "meter": meter, "quantity": "power"} | iso
    with httpx.Client(base_url=url, timeout=60, cookies={"estate_session": cookie}) as c:
        body = c.get("/api/overview").json()
        trend = c.get("/api/trend", params=trend_params).json()
    listed = sum(len(u["facilities"]) for u in body["utilities"])
    print(f"  overview: {len(body['utilities'])} utilities, {listed} facility rows, "
          f"{sum(f['active_alarms'] > 0 for u in body['utilities'] for f in u['facilities'])}"
          f" rows in alarm; trend: {trend['resolution']} in {trend['step_s']:.0f} s steps, "
          f"{len(trend['points'])} points", flush=True)
    found = {
        "overview": timed_gets(url, "/api/overview", None, args.overview_requests,
                               args.concurrency, cookie),
        "session": timed_gets(url, "/api/session", None, args.overview_requests,
                              args.concurrency, cookie),
        "trend": timed_gets(url, "/api/trend", trend_params, args.trend_requests, 1, cookie)}
    found["influx_raw"], found["influx_rollup"] = influx_reference(
        influx_url, start_ms, end_ms, args.trend_requests)
    print(f"\n{label}")
    print(line("GET /api/overview", found["overview"], TARGETS["overview"]))
    print(line("  reference GET /api/session", found["session"]))
    print(line("GET /api/trend, 31 days", found["trend"], TARGETS["trend"]))
    print(line("  reference InfluxDB, 45-min aggregates of the raw month", found["influx_raw"]))
    print(line("  reference InfluxDB, the same from reading_15m", found["influx_rollup"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facilities", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--per-context", type=int, default=4)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--probe-interval-s", type=float, default=0.5)
    parser.add_argument("--meter-rate", type=float, default=200.0,
                        help="the estate's meters' messages a second while measuring")
    parser.add_argument("--overview-requests", type=int, default=400)
    parser.add_argument("--trend-requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    # The bench's own clients connect and close often: their notices are not results.
    logging.basicConfig(level=logging.ERROR)
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    mosquitto, influx = Mosquitto(work / "mosquitto"), InfluxDB(work / "influxdb")
    mosquitto.start()
    influx.start()
    ctx = mp.get_context("spawn")
    stop, sent = ctx.Event(), ctx.Value("d", 0.0)
    load = ctx.Process(target=web_estate.meter_load,
                       args=(mosquitto.port, args.facilities, args.meter_rate, stop, sent))
    web: subprocess.Popen[bytes] | None = None
    try:
        estate, registry_url, start_ms, end_ms = prepare(work, influx, args.facilities)
        web, url = start_web(work, mosquitto, influx, estate, registry_url)
        load.start()
        time.sleep(5)  # every meter reported at least once at 200 msgs/s: 2,300 meters
        cookie = session_cookie(url, USER, PASSWORD)
        measure_http(url, influx.url, cookie, args, (start_ms, end_ms),
                     f"without pages (load {os.getloadavg()[0]:.2f}):")
        result = run_pages(
            url, (USER, PASSWORD), mosquitto.port, args.pages, args.per_context,
            args.probes, args.probe_interval_s,
            while_open=lambda: measure_http(
                url, influx.url, cookie, args, (start_ms, end_ms),
                f"with {args.pages} pages open (load {os.getloadavg()[0]:.2f}):"))
        health: dict[str, Any] = httpx.get(f"{url}/api/health", timeout=30).json()
        print(f"\n{result.pages} pages in {result.contexts} browser contexts, "
              f"{args.probes} probes {args.probe_interval_s} s apart, meters at "
              f"{args.meter_rate:.0f} msgs/s ({sent.value:,.0f} sent):")
        print(line("MQTT publish -> shown in a page", result.latencies_s, TARGETS["page"]))
        print(f"  not shown: {result.missed} of {result.pages * args.probes}")
        print(line("  reference MQTT publish -> a plain subscriber", result.broker_s))
        print(f"  the view's live feed: {health.get('live')}")
        if result.latencies_s:
            print(f"  mean {statistics.fmean(result.latencies_s) * 1000:.1f} ms")
    finally:
        stop.set()
        if load.is_alive():
            load.join(10)
        if web is not None:
            web.terminate()
            web.wait(20)
        mosquitto.stop()
        influx.stop()
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min); files in {work}")


if __name__ == "__main__":
    main()
