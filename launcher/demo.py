"""``estate demo``: the whole product on the sample estate, on this machine.

Starts a real Mosquitto and a real InfluxDB as child processes with their data under
``var/``, then the services as separate processes (exactly as they run in production),
streams their logs with a prefix, and on Ctrl-C stops them in reverse order so ingest
flushes before the servers go. A second run reuses ``var/``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from estate.lifecycle import stop_on_signals
from launcher.servers import InfluxDB, Mosquitto, environment_with_path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoPorts:
    # Not the standard 1883/8086: a system Mosquitto or InfluxDB may already hold those.
    mqtt: int = 18830
    influx_http: int = 18086
    influx_rpc: int = 18088
    web: int = 8000
    ingest_http: int = 9101


def service_environment(ports: DemoPorts, var: Path) -> dict[str, str]:
    env = environment_with_path()
    influx = f"http://127.0.0.1:{ports.influx_http}"
    for prefix in ("INGEST", "EDGE", "DISPATCH"):
        env[f"{prefix}_MQTT__HOST"] = "127.0.0.1"
        env[f"{prefix}_MQTT__PORT"] = str(ports.mqtt)
    for prefix in ("INGEST", "DISPATCH"):
        env[f"{prefix}_INFLUX__URL"] = influx
    env["DISPATCH_WEB__PORT"] = str(ports.web)
    env["INGEST_SPOOL_DIR"] = str(var / "ingest-spool")
    env["DISPATCH_REGISTRY_URL"] = f"sqlite:///{var / 'registry.sqlite'}"
    env["INGEST_HTTP_PORT"] = str(ports.ingest_http)
    # The demo's meters report every 2 s so the page moves while someone watches it.
    env["EDGE_INTERVAL_S"] = "2"
    env["DISPATCH_STALE_AFTER_S"] = "30"
    env["DISPATCH_FRESHNESS_EVERY_S"] = "15"
    return env


SERVICES: tuple[tuple[str, list[str]], ...] = (
    ("ingest", ["-m", "ingest"]),
    ("dispatch", ["-m", "dispatch", "worker"]),
    ("web", ["-m", "dispatch", "web"]),
    ("simulator", ["-m", "edge"]),
)


def _pump(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>9} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def run_demo(var: Path, ports: DemoPorts) -> int:
    """Run until Ctrl-C or SIGTERM; return the exit code."""
    var.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    stop_on_signals(stop)
    mosquitto = Mosquitto(var / "mosquitto", port=ports.mqtt)
    influx = InfluxDB(var / "influxdb", http_port=ports.influx_http, rpc_port=ports.influx_rpc)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    code = 0
    try:
        mosquitto.start()
        influx.start()
        log.info("Mosquitto on 127.0.0.1:%d, InfluxDB on %s (data in %s)", ports.mqtt,
                 influx.url, var)
        env = service_environment(ports, var)
        for name, args in SERVICES:
            child = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
            assert child.stdout is not None
            threading.Thread(target=_pump, args=(name, child.stdout), daemon=True).start()
            children.append((name, child))
        log.info("web view: http://127.0.0.1:%d  (Ctrl-C stops everything)", ports.web)
        while not stop.wait(0.5):
            for name, child in children:
                if child.poll() is not None:
                    log.error("%s exited with %s; stopping the demo", name, child.returncode)
                    code = 1
                    stop.set()
    finally:
        for name, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in 30 s; killing it", name)
                    child.kill()
        influx.stop()
        mosquitto.stop()
        log.info("demo stopped; data kept in %s", var)
    return code


