"""Ingest throughput, latency and memory, beside the raw limits of this machine.

Starts its own Mosquitto and InfluxDB 1.x (as the tests do), then measures in one run:

1. raw InfluxDB write rate: pre-serialised lines, batches of 5,000, one keep-alive client;
2. raw MQTT delivery rate: paho publisher -> Mosquitto -> paho subscriber, QoS 1, an empty
   handler, single-reading payloads;
3. ingest with gateway batches (50 readings a message, 10,000 meters): readings/s from the
   first publication until InfluxDB answered for the last reading (ingest's written
   counter, confirmed by a count in InfluxDB), and the ingest process's peak RSS;
4. ingest with one reading per message: messages/s, compared with (2);
5. latency at half of (3)'s rate: a probe meter publishes one reading at a time while the
   load runs and polls InfluxDB until it is queryable; p50 and p99 of publish -> queryable.

Each figure is the median of ``--runs`` runs. Usage:
    .venv/bin/python bench/ingest.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.influxdb_v1 import InfluxV1Store  # noqa: E402
from adapters.mqtt import InboundMessage, MqttConnection, Session  # noqa: E402
from adapters.ops_http import wait_healthy  # noqa: E402
from estate.lineprotocol import reading_line, readings_lines  # noqa: E402
from estate.ports import Handling, Where  # noqa: E402
from estate.readings import Reading  # noqa: E402
from estate.schema import READINGS  # noqa: E402
from estate.senml import decode_pack, encode_readings  # noqa: E402
from estate.settings import InfluxSettings, MqttSettings  # noqa: E402
from estate.stored import count_readings  # noqa: E402
from estate.topics import Channel, DeviceId, parse_topic  # noqa: E402
from launcher.servers import InfluxDB, Mosquitto, free_port  # noqa: E402

ESTATE = "bench"
QUANTITIES = (("power", "", "kW"), ("voltage", "l1", "V"), ("voltage", "l2", "V"),
              ("voltage", "l3", "V"), ("current", "l1", "A"))


def device(index: int) -> DeviceId:
    return DeviceId(ESTATE, f"f{index % 50:02d}", f"m{index:05d}")


def payloads(meters: int, messages: int, per_message: int, base_ms: int,
             ) -> list[tuple[str, bytes]]:
    """``messages`` SenML packs over ``meters`` meters, ``per_message`` readings each."""
    out = []
    steps = max(1, per_message // len(QUANTITIES))
    for k in range(messages):
        d = device(k % meters)
        round_ = k // meters
        readings = []
        for s in range(steps):
            t = base_ms + (round_ * steps + s) * 1000
            for q, ch, _unit in QUANTITIES[: per_message if per_message < len(QUANTITIES)
                                           else len(QUANTITIES)]:
                readings.append(Reading(ESTATE, d.facility, d.device, q, ch,
                                        200.0 + (k % 97) + s / 10, t))
        out.append((d.topic(Channel.TELEMETRY), encode_readings(d, readings)))
    return out


def publish_process(port: int, items: list[tuple[str, bytes]], rate: float,
                    go: Any, done: Any, cpu: Any = None) -> None:
    """Publish ``items`` at QoS 1 (at most ``rate`` messages/s if given), wait for PUBACKs;
    ``done`` gets the time it took and ``cpu`` (if given) the CPU seconds it used."""
    client = MqttConnection(MqttSettings(port=port), f"pub-{uuid.uuid4().hex[:8]}")
    client.connect()
    go.wait()
    start = time.monotonic()
    cpu_start = time.process_time()
    infos: deque[Any] = deque()
    for k, (topic, payload) in enumerate(items):
        # MQTT message ids wrap at 65,535: keep fewer than that awaiting their PUBACK.
        while len(infos) >= 30_000:
            infos.popleft().wait(300)
        infos.append(client.publish(topic, payload, qos=1))
        if rate:
            delay = start + (k + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    for info in infos:
        info.wait(300)
    done.value = time.monotonic() - start
    if cpu is not None:
        cpu.value = time.process_time() - cpu_start
    client.close()


def subscribe_process(port: int, expected: int, result: Any, ready: Any) -> None:
    """A paho subscriber with an empty handler: the broker's delivery limit."""
    times: list[float] = []

    def handle(message: InboundMessage) -> None:
        times.append(time.monotonic())
        if len(times) == expected:
            finished.set()

    finished = threading.Event()
    client = MqttConnection(MqttSettings(port=port), f"raw-{uuid.uuid4().hex[:8]}")
    # On the network thread, as ingest's raw enqueue: the broker's delivery limit.
    client.subscribe(f"estate/v1/{ESTATE}/+/+/telemetry", handle, 1,
                     handling=Handling.INLINE)
    client.connect()
    ready.set()
    finished.wait(300)
    client.close()
    result.value = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def raw_influx_rate(url: str, lines: list[str], batch: int = 5000) -> float:
    store = InfluxV1Store(InfluxSettings(url=url, database=f"raw_{uuid.uuid4().hex[:6]}"))
    store.ensure_database()
    batches = [lines[i:i + batch] for i in range(0, len(lines), batch)]
    start = time.monotonic()
    for b in batches:
        store.write_lines(b)
    elapsed = time.monotonic() - start
    store.close()
    return len(lines) / elapsed


def raw_mqtt_rate(port: int, items: list[tuple[str, bytes]]) -> float:
    ctx = mp.get_context("spawn")
    result, rate = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
    ready, go = ctx.Event(), ctx.Event()
    sub = ctx.Process(target=subscribe_process, args=(port, len(items), result, ready))
    sub.start()
    ready.wait(30)
    pub = ctx.Process(target=publish_process, args=(port, items, 0.0, go, rate))
    pub.start()
    time.sleep(1.0)
    go.set()
    pub.join(600)
    sub.join(600)
    return float(result.value)


@dataclass
class IngestRun:
    readings_per_s: float
    messages_per_s: float
    peak_rss_mb: float
    latencies_ms: list[float]
    cpu_s: dict[str, float]  # CPU seconds each process used during the run


def _family(pid: int) -> list[int]:
    """A process and its children (ingest's decoding process), recursively."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            pids += _family(int(child))
    return pids


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children so far."""
    total = 0
    for member in _family(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children, added up (an upper bound of
    their peak together)."""
    total = 0.0
    for member in _family(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def run_ingest(mqtt_port: int, influx_url: str, items: list[tuple[str, bytes]],
               readings: int, work: Path, servers: dict[str, int], rate: float = 0.0,
               probe: bool = False, workers: int = 1) -> IngestRun:
    """Ingest ``items`` with ``workers`` ingest processes (more than one: a shared
    subscription, the documented way to scale out)."""
    database = f"ingest_{uuid.uuid4().hex[:6]}"
    http_ports = [free_port() for _ in range(workers)]
    processes = []
    for k, http_port in enumerate(http_ports):
        env = dict(os.environ, INGEST_MQTT__PORT=str(mqtt_port), INGEST_INFLUX__URL=influx_url,
                   INGEST_INFLUX__DATABASE=database, INGEST_CLIENT_ID=f"bench-{database}-{k}",
                   INGEST_SPOOL_DIR=str(work / f"{database}-{k}"),
                   INGEST_HTTP_PORT=str(http_port), ESTATE_LOG_LEVEL="WARNING",
                   # A group of its own per run: a departed worker's persistent session
                   # keeps its share of a group until the session expires.
                   INGEST_SHARE_GROUP=f"bench-{database}" if workers > 1 else "")
        processes.append(subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env))

    def written() -> float:
        counts = [_metric(port, "ingest_readings_written_total") for port in http_ports]
        return -1.0 if min(counts) < 0 else sum(counts)

    try:
        for port in http_ports:  # ready: connected and subscribed
            if wait_healthy(f"http://127.0.0.1:{port}/health", 60) is None:
                raise RuntimeError("ingest did not become ready")
        ctx = mp.get_context("spawn")
        go, publish_time, publish_cpu = ctx.Event(), ctx.Value("d", 0.0), ctx.Value("d", 0.0)
        publisher = ctx.Process(target=publish_process,
                                args=(mqtt_port, items, rate, go, publish_time, publish_cpu))
        publisher.start()
        time.sleep(1.0)
        store = InfluxV1Store(InfluxSettings(url=influx_url, database=database))
        latencies: list[float] = []
        stop_probe = threading.Event()
        prober = threading.Thread(target=_probe, args=(mqtt_port, store, latencies, stop_probe))
        pids = {**servers, **{f"ingest{k or ''}": proc.pid for k, proc in enumerate(processes)},
                "publisher": publisher.pid or 0}
        cpu_before = {name: _cpu_s(pid) for name, pid in pids.items()}
        start = time.monotonic()
        go.set()
        if probe:
            prober.start()
        while written() < readings + len(latencies):
            if time.monotonic() - start > 600:
                raise RuntimeError("ingest did not finish in 10 minutes")
            # Each poll costs ingest a /metrics answer: ten a second keep the bias under 1%.
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        cpu = {name: _cpu_s(pid) - cpu_before[name] for name, pid in pids.items()
               if name != "publisher"}
        stop_probe.set()
        if probe:
            prober.join(30)
        publisher.join(60)
        # The load generator shares the machine: its CPU (all threads, paho's included).
        cpu["publisher"] = publish_cpu.value
        count = count_readings(store, where=Where({"estate": ESTATE}))
        rss = max(_peak_rss_mb(proc.pid) for proc in processes)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.wait(60)
        store.close()
        _end_sessions(mqtt_port, [f"bench-{database}-{k}" for k in range(workers)])
        if count != readings:
            raise RuntimeError(f"InfluxDB holds {count} readings, {readings} were published")
        return IngestRun(readings / elapsed, len(items) / elapsed, rss, latencies, cpu)
    finally:
        for proc in processes:
            if proc.poll() is None:  # a failed run must not leave ingest behind
                proc.kill()
                proc.wait(60)


def _end_sessions(port: int, client_ids: list[str]) -> None:
    """End the persistent sessions of a run's workers, as when a worker is retired.

    Left alone, the broker would keep queueing every later message for them until they
    expire (an hour): each later run would make the broker store a copy per departed
    worker, and measure that instead of ingest.
    """
    for client_id in client_ids:
        # A clean start discards the old session; with no expiry, the new one ends with
        # this connection.
        connection = MqttConnection(MqttSettings(port=port), client_id,
                                    session=Session(clean_start=True, expiry_s=0))
        connection.connect()
        connection.close()


def _probe(port: int, store: InfluxV1Store, latencies: list[float],
           stop: threading.Event) -> None:
    """One reading at a time from a probe meter: publish, then poll until queryable."""
    client = MqttConnection(MqttSettings(port=port), f"probe-{uuid.uuid4().hex[:8]}")
    client.connect()
    probe = DeviceId("probe", "p", "probe")
    k = 0
    while not stop.is_set():
        k += 1
        now_ms = time.time_ns() // 1_000_000
        payload = encode_readings(probe, [Reading("probe", "p", "probe", "power", "",
                                                  float(k), now_ms)])
        sent = time.monotonic()
        client.publish(probe.topic(Channel.TELEMETRY), payload, qos=1)
        while not stop.is_set():
            rows = store.query(f'SELECT last("power") FROM "{READINGS}" WHERE "estate" = '
                               "'probe'")
            if rows and rows[0].values[0][1] >= k:
                latencies.append((time.monotonic() - sent) * 1000)
                break
            time.sleep(0.005)
        time.sleep(0.05)
    client.close()


def _print_cpu(run: IngestRun, readings: int) -> None:
    per_million = {k: v * 1_000_000 / readings for k, v in run.cpu_s.items()}
    print("    CPU seconds per million readings: " +
          ", ".join(f"{k} {v:.1f}" for k, v in per_million.items()))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe-s", type=float, default=15.0, metavar="SECONDS",
                        help="seconds of paced load while the latency is probed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="smaller loads, one run")
    parser.add_argument("--probe-rate", type=float, default=None, metavar="READINGS_PER_S",
                        help="probe latency at this load instead of half of the measured "
                             "rate (to compare two builds at the same load)")
    parser.add_argument("--scale-out", action="store_true",
                        help="also run the batched load with two workers on a shared "
                             "subscription")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    batched_messages = 10_000 if args.quick else 20_000
    single_messages = 30_000 if args.quick else 100_000
    work = Path(tempfile.mkdtemp(prefix="estate-bench-"))
    broker, influx = Mosquitto(work / "mosquitto"), InfluxDB(work / "influxdb")
    broker.start()
    influx.start()
    base_ms = (time.time_ns() // 1_000_000) - 3 * 3600 * 1000
    try:
        print(f"machine: {os.cpu_count()} cores; {args.meters} meters; median of {runs} runs")
        batched = payloads(args.meters, batched_messages, 50, base_ms)
        single = payloads(args.meters, single_messages, 1, base_ms)
        lines = [reading_line(Reading(ESTATE, device(i % args.meters).facility,
                                      device(i % args.meters).device, "power", "",
                                      float(i), base_ms + i)) for i in range(1_000_000)]
        raw_influx = statistics.median(raw_influx_rate(influx.url, lines) for _ in range(runs))
        print(f"raw InfluxDB write, batches of 5,000:    {raw_influx:>10,.0f} points/s")
        # The same limit for the very lines ingest writes for the batched load (a point per
        # meter and instant, 5 readings each), decoded beforehand: readings/s.
        packed = [line for topic, payload in batched[: len(batched) // 2]
                  for line in readings_lines(decode_pack(
                      payload, parse_topic(topic).device, time.time_ns() // 1_000_000).readings)]
        per_point = batched_messages * 50 / (len(packed) * 2)
        raw_packed = statistics.median(raw_influx_rate(influx.url, packed)
                                       for _ in range(runs)) * per_point
        print(f"raw InfluxDB write of ingest's lines:    {raw_packed:>10,.0f} readings/s "
              f"({per_point:.0f} readings a point)")
        raw_mqtt = statistics.median(raw_mqtt_rate(broker.port, single) for _ in range(runs))
        print(f"raw paho QoS 1 delivery, empty handler:  {raw_mqtt:>10,.0f} msg/s")

        assert broker.process is not None
        assert influx.process is not None
        servers = {"mosquitto": broker.process.pid, "influxd": influx.process.pid}
        results = [run_ingest(broker.port, influx.url, batched, batched_messages * 50, work,
                              servers) for _ in range(runs)]
        batched_rate = statistics.median(r.readings_per_s for r in results)
        rss = max(r.peak_rss_mb for r in results)
        print(f"ingest, 50 readings/message:             {batched_rate:>10,.0f} readings/s "
              f"({batched_rate / raw_influx:.0%} of raw InfluxDB points/s, "
              f"{batched_rate / raw_packed:.0%} of the raw rate of its own lines)")
        _print_cpu(results[0], batched_messages * 50)
        if args.scale_out:
            two = [run_ingest(broker.port, influx.url, batched, batched_messages * 50, work,
                              servers, workers=2) for _ in range(runs)]
            two_rate = statistics.median(r.readings_per_s for r in two)
            print(f"ingest, 50 readings/message, 2 workers:  {two_rate:>10,.0f} readings/s "
                  f"({two_rate / raw_influx:.0%} of raw InfluxDB points/s; shared "
                  f"subscription)")
            _print_cpu(two[0], batched_messages * 50)
        results1 = [run_ingest(broker.port, influx.url, single, single_messages, work, servers)
                    for _ in range(runs)]
        single_rate = statistics.median(r.messages_per_s for r in results1)
        rss = max(rss, *(r.peak_rss_mb for r in results1))
        print(f"ingest, 1 reading/message:               {single_rate:>10,.0f} msg/s "
              f"({single_rate / raw_mqtt:.0%} of raw QoS 1 delivery)")
        _print_cpu(results1[0], single_messages)
        half = (args.probe_rate if args.probe_rate else batched_rate / 2) / 50
        # --probe-s of load at that rate (15 by default); a load of its own, long enough
        # whatever the rate. About 5 probes a second: a p99 that is more than the second
        # highest probe needs a minute or more.
        paced_load = payloads(args.meters, int(half * args.probe_s), 50, base_ms + 3_600_000)
        paced = run_ingest(broker.port, influx.url, paced_load, len(paced_load) * 50, work,
                           servers, rate=half, probe=True)
        p50, p99 = pct(paced.latencies_ms, 0.5), pct(paced.latencies_ms, 0.99)
        rss = max(rss, paced.peak_rss_mb)
        which = "a fixed" if args.probe_rate else "half"
        print(f"latency at {which} rate ({half * 50:,.0f} readings/s), publish -> queryable, "
              f"{len(paced.latencies_ms)} probes: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        tail = ", ".join(f"p{q * 100:.0f} {pct(paced.latencies_ms, q):.0f}"
                         for q in (0.75, 0.9, 0.95))
        print(f"    the rest of the distribution: {tail}, "
              f"max {max(paced.latencies_ms):.0f} ms")
        print(f"ingest peak RSS:                          {rss:>10.0f} MB")
        print()
        checks = [
            ("readings/s with 50 per message >= 150,000", batched_rate >= 150_000),
            ("... and >= 25% of raw InfluxDB write rate", batched_rate >= 0.25 * raw_influx),
            ("1 per message >= 70% of raw QoS 1 delivery", single_rate >= 0.70 * raw_mqtt),
            ("p99 latency at half rate <= 1 s", p99 <= 1000),
            ("ingest RSS <= 200 MB", rss <= 200),
        ]
        for name, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    finally:
        broker.stop()
        influx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
