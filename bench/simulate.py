"""The simulator's step rate and the gateway's Modbus poll rate, beside their limits.

Measures in one run:

1. the simulator stepping a 10,000-meter synthetic estate: readings/s (``step``, which
   builds the ``Reading`` tuples) and values/s (``advance``, the numpy step alone);
2. what the simulator feeds: one step of the 10,000 meters published through
   ``edge.publisher.Publisher`` (one SenML pack per meter, QoS 1) to a real Mosquitto
   started in a temporary directory, until the broker acknowledged the last pack;
3. the gateway's poll rate (``ModbusGateway.poll_once``, decoding and publishing to the same
   Mosquitto) of 100 and 1,000 simulated meters served by ``python -m edge`` in its own
   process (``EDGE_MODBUS_PORT``), beside the raw pymodbus read rate of the same registers
   over the same connections with no decoding or publishing;
4. the history backfill of one day of 1,000 meters at 15-minute steps into a real InfluxDB
   1.x (``edge.backfill.backfill``), beside the raw write rate of the same lines,
   pre-serialised, in the same batches of 5,000.

Each figure is the median of ``--runs`` runs. Usage:
    .venv/bin/python bench/simulate.py [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pymodbus.client import ModbusTcpClient  # noqa: E402

from adapters.influxdb_v1 import InfluxV1Store  # noqa: E402
from edge.backfill import BATCH_LINES, backfill  # noqa: E402
from edge.modbus import ModbusGateway, ModbusMeter, plan_blocks  # noqa: E402
from edge.modbus_server import SimulatedModbusServers  # noqa: E402
from edge.publisher import Publisher  # noqa: E402
from edge.scale import synthetic_estate  # noqa: E402
from edge.simulator import EstateSimulator  # noqa: E402
from estate.lineprotocol import readings_lines  # noqa: E402
from estate.settings import InfluxSettings, MqttSettings  # noqa: E402
from estate.topics import DeviceId  # noqa: E402
from launcher.servers import InfluxDB, Mosquitto  # noqa: E402

SIM_METERS = 10_000
SERVED_ESTATE = 2_000  # about 1,170 of its meters are electrical: enough for 1,000 polled
SEED = 1
BACKFILL_METERS = 1_000
T0 = 1_784_000_000_000  # a weekday in July 2026, 06:13 UTC


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    for base in range(21_000, 60_000, 97):
        sockets = []
        try:
            for k in range(count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports")


def simulator_rates(runs: int, steps: int) -> tuple[float, float, int]:
    sim = EstateSimulator(synthetic_estate(SIM_METERS, SEED), SEED)
    sim.step(T0)
    per_step = sum(len(r) for _, r in sim.step(T0 + 60_000))
    values = sum(v.size for kind in sim.advance(T0 + 120_000).values.values()
                 for v in kind.values())
    step_rates, advance_rates = [], []
    t = T0 + 180_000
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            sim.step(t)
            t += 60_000
        step_rates.append(per_step * steps / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(steps):
            sim.advance(t)
            t += 60_000
        advance_rates.append(values * steps / (time.perf_counter() - start))
    return statistics.median(step_rates), statistics.median(advance_rates), per_step


def publish_rate(port: int, runs: int) -> tuple[float, float]:
    sim = EstateSimulator(synthetic_estate(SIM_METERS, SEED), SEED)
    publisher = Publisher(MqttSettings(port=port), f"bench-{uuid.uuid4().hex[:8]}",
                          DeviceId("synthetic", "edge", "bench"))
    publisher.connection.connect()
    readings_rates, message_rates = [], []
    for k in range(runs):
        step = sim.step(T0 + k * 60_000)
        readings = sum(len(r) for _, r in step)
        start = time.perf_counter()
        for device, rs in step:
            publisher.publish(device, rs)
        # Mosquitto acknowledges in order: the last acknowledgement covers every pack.
        publisher.connection.publish("bench/marker", b"", qos=1).wait(120)
        elapsed = time.perf_counter() - start
        readings_rates.append(readings / elapsed)
        message_rates.append(len(step) / elapsed)
    publisher.connection.close()
    return statistics.median(readings_rates), statistics.median(message_rates)


def raw_read_rate(meters: list[ModbusMeter], runs: int) -> float:
    """pymodbus reads of the same registers, one connection per meter, nothing decoded."""
    blocks = plan_blocks(meters[0].meter_map)
    clients = [ModbusTcpClient(m.host, port=m.port, timeout=2, retries=0) for m in meters]
    for c in clients:
        c.connect()
    rates = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            for meter, client in zip(meters, clients, strict=True):
                for b in blocks:
                    response = client.read_holding_registers(b.address, count=b.count,
                                                             device_id=meter.unit_id)
                    if response.isError():
                        raise RuntimeError(f"{meter.device}: {response}")
            rates.append(len(meters) / (time.perf_counter() - start))
    finally:
        for c in clients:
            c.close()
    return statistics.median(rates)


class _Discard:
    """A publisher that drops what it is given: the gateway's polling and decoding alone."""

    def publish(self, device: DeviceId, readings: list[object]) -> None:
        pass


def gateway_rate(meters: list[ModbusMeter], mqtt_port: int | None, runs: int) -> float:
    """Meters/s of ``poll_once``, publishing to Mosquitto (or, without a port, nowhere)."""
    publisher: Publisher | None = None
    if mqtt_port is not None:
        publisher = Publisher(MqttSettings(port=mqtt_port), f"gw-{uuid.uuid4().hex[:8]}",
                              DeviceId("synthetic", "edge", "bench-gw"))
        publisher.connection.connect()
    gateway = ModbusGateway(meters, publisher or _Discard(), timeout_s=2)  # type: ignore[arg-type]
    rates = []
    try:
        if len(gateway.poll_once(T0)) != len(meters):  # connects every meter
            raise RuntimeError("not every meter answered")
        for k in range(runs):
            start = time.perf_counter()
            polled = gateway.poll_once(T0 + (k + 1) * 5_000)
            rates.append(len(polled) / (time.perf_counter() - start))
            if len(polled) != len(meters):
                raise RuntimeError("not every meter answered")
    finally:
        gateway.close()
        if publisher is not None:
            publisher.connection.close()
    return statistics.median(rates)


def serve_modbus(port: int, mqtt_port: int, work: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EDGE_METERS=str(SERVED_ESTATE), EDGE_SEED=str(SEED),
               EDGE_PUBLISH="false", EDGE_MODBUS_PORT=str(port), EDGE_INTERVAL_S="5",
               EDGE_MQTT__PORT=str(mqtt_port), ESTATE_LOG_LEVEL="WARNING")
    log = (work / "edge.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "edge"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    return process


def wait_for_ports(ports: list[int], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            if process.poll() is not None:
                raise RuntimeError("python -m edge exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on {port}") from None
                time.sleep(0.1)


def backfill_rates(url: str, runs: int) -> tuple[float, float, float, int]:
    """Lines/s of a day's backfill of 1,000 meters; of simulating and serialising the same
    lines with nothing written; and of writing them, pre-serialised, raw."""
    spec = synthetic_estate(BACKFILL_METERS, SEED)
    day_ms = 86_400_000
    end = (time.time_ns() // 1_000_000) // day_ms * day_ms
    backfilled, generated, raw = [], [], []
    for _ in range(runs):
        sim = EstateSimulator(spec, SEED)
        start = time.perf_counter()
        lines = [line for k in range(96)
                 for line in readings_lines([r for _, rs in sim.step(end - day_ms + k * 900_000)
                                             for r in rs])]
        generated.append(len(lines) / (time.perf_counter() - start))
        store = InfluxV1Store(InfluxSettings(url=url, database=f"b_{uuid.uuid4().hex[:8]}"))
        store.ensure_database()
        start = time.perf_counter()
        result = backfill(EstateSimulator(spec, SEED), store, end - day_ms, end, 900_000)
        backfilled.append(result.lines / (time.perf_counter() - start))
        store.close()
        store = InfluxV1Store(InfluxSettings(url=url, database=f"r_{uuid.uuid4().hex[:8]}"))
        store.ensure_database()
        start = time.perf_counter()
        for k in range(0, len(lines), BATCH_LINES):
            store.write_lines(lines[k:k + BATCH_LINES])
        raw.append(len(lines) / (time.perf_counter() - start))
        store.close()
    return (statistics.median(backfilled), statistics.median(generated),
            statistics.median(raw), result.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="simulator steps per run")
    args = parser.parse_args()
    # The MQTT wrapper logs every disconnection; here they are the benchmark's own.
    logging.basicConfig(level=logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="estate-bench-sim-"))
    broker = Mosquitto(work / "mosquitto")
    broker.start()
    influx = InfluxDB(work / "influxdb")
    influx.start()
    server: subprocess.Popen[bytes] | None = None
    try:
        print(f"machine: {os.cpu_count()} cores; median of {args.runs} runs")
        step_rate, advance_rate, per_step = simulator_rates(args.runs, args.steps)
        print(f"simulator, {SIM_METERS:,} meters ({per_step:,} readings a step):")
        print(f"  step (Reading tuples):              {step_rate:>12,.0f} readings/s "
              f"({per_step / step_rate * 1000:.0f} ms a step)")
        print(f"  advance (numpy values only):        {advance_rate:>12,.0f} values/s")
        pub_readings, pub_messages = publish_rate(broker.port, args.runs)
        print(f"  limit: publishing a step to Mosquitto, QoS 1: {pub_readings:>9,.0f} readings/s "
              f"({pub_messages:,.0f} packs/s); the simulator is "
              f"{step_rate / pub_readings:.0f}x faster")

        estate = synthetic_estate(SERVED_ESTATE, SEED)
        planned = SimulatedModbusServers(EstateSimulator(estate, SEED), port=1)
        base = consecutive_free_ports(len(planned.ports))
        served = SimulatedModbusServers(EstateSimulator(estate, SEED), port=base)
        server = serve_modbus(base, broker.port, work)
        wait_for_ports(served.ports, server)
        meters = served.meters
        registers = sum(b.count for b in plan_blocks(meters[0].meter_map))
        print(f"Modbus: {len(meters):,} simulated meters on {len(served.ports)} servers "
              f"(python -m edge, its own process); {registers} registers a meter in "
              f"{len(plan_blocks(meters[0].meter_map))} requests")
        results = []
        for count in (100, 1_000):
            cpu_before = _cpu_s(server.pid)
            raw = raw_read_rate(meters[:count], args.runs)
            decoded = gateway_rate(meters[:count], None, args.runs)
            polled = gateway_rate(meters[:count], broker.port, args.runs)
            cpu = _cpu_s(server.pid) - cpu_before
            polls = count * (3 * args.runs + 2)
            results.append((count, polled, decoded, raw))
            print(f"  {count:>5} meters: gateway poll_once {polled:>7,.0f} meters/s "
                  f"({polled * registers:>8,.0f} registers/s), {polled / raw:.0%} of raw reads")
            print(f"         limits: poll_once without publishing {decoded:>7,.0f} meters/s "
                  f"({decoded / raw:.0%} of raw); raw pymodbus reads {raw:>7,.0f} meters/s; "
                  f"server CPU {cpu / polls * 1000:.2f} ms a meter")
        backfilled, generated, raw_write, lines = backfill_rates(influx.url, args.runs)
        in_turn = 1 / (1 / generated + 1 / raw_write)
        month_s = 30 * lines / backfilled
        print(f"backfill, one day of {BACKFILL_METERS:,} meters at 15 min ({lines:,} lines, one "
              f"per meter and instant): {backfilled:>9,.0f} lines/s")
        print(f"  limits: simulate + serialise only {generated:,.0f} lines/s; raw InfluxDB "
              f"write {raw_write:,.0f} lines/s; the two in turn {in_turn:,.0f} lines/s")
        print(f"  30 days of {BACKFILL_METERS:,} meters at this rate: {month_s:.0f} s")
        print()
        checks = [
            (f"{SIM_METERS:,} meters step in <= 1 s (1 s interval sustainable)",
             per_step / step_rate <= 1.0),
            ("simulator >= 10x the rate Mosquitto takes its readings", step_rate
             >= 10 * pub_readings),
            *[(f"gateway decodes {c:,} meters at >= 70% of raw pymodbus reads", d >= 0.7 * r)
              for c, _, d, r in results],
            *[(f"gateway polls and publishes {c:,} meters within a 5 s interval", c / p <= 5.0)
              for c, p, _, _ in results],
            ("backfill >= simulating and writing in turn (the writer thread overlaps)",
             backfilled >= in_turn),
            (f"30 days of {BACKFILL_METERS:,} meters backfill in <= 2 minutes", month_s <= 120),
        ]
        for name, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        broker.stop()
        influx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
