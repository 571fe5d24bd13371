"""Real processes for the control room's acceptance tests: the dispatch worker (a process
of its own, to be killed with SIGKILL), the estate simulator (a process, faults injected
by ``EDGE_FAULTS``), and an estate file for them both with the rules' times shortened so a
leak, a stuck value or an outage shows within minutes instead of hours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from edge.scale import synthetic_estate
from estate.model import SAMPLE_ESTATE
from estate.settings import InfluxSettings, MqttSettings
from launcher.servers import free_port

ROOT = Path(__file__).resolve().parents[3]

# Rules as in production, their windows and waits shortened to the test's minutes: the
# balance on one-minute windows, judged at once; a silent meter after 15 s; a stuck
# value after a minute (the shortest allowed); a clock off for 10 s.
FAST_RULES: list[dict[str, Any]] = [
    {"id": "balance", "kind": "balance", "window_s": 60, "for_s": 0, "severity": "high"},
    {"id": "no-data", "kind": "no_data", "timeout_s": 15, "severity": "high"},
    {"id": "stuck", "kind": "stuck", "meter_kind": "electricity", "quantity": "power",
     "for_s": 60, "severity": "medium"},
    {"id": "clock-skew", "kind": "clock_skew", "max_skew_s": 30, "for_s": 10,
     "severity": "low"},
    {"id": "coldroom-warm", "kind": "threshold", "meter": "foods/coldroom-temp",
     "quantity": "temperature", "high": 8, "hysteresis": 1, "for_s": 0,
     "severity": "critical", "name": "Cold room warming (food safety)"},
]


# A synthetic estate has no crews: one for its feeders, around the clock.
ELECTRICIANS = {"id": "electricians", "name": "Electricians", "skills": ["electrical",
                                                                         "metering"],
                "base": "utilities", "capacity": 2}


def fast_estate(directory: Path, source: Path = SAMPLE_ESTATE,
                rules: Sequence[Mapping[str, Any]] = FAST_RULES) -> Path:
    """The estate file with ``rules`` added, and every crew on shift around the clock (so
    the assignment does not depend on the hour the test runs at)."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    def scope(rule: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(rule.get(k) for k in ("id", "meter", "facility", "meter_kind", "network"))

    replaced = {scope(r) for r in rules}
    data["alarm_rules"] = [*(r for r in data.get("alarm_rules", []) if scope(r) not in replaced),
                           *rules]
    data["crews"] = data.get("crews") or [dict(ELECTRICIANS)]
    for crew in data["crews"]:
        crew["shifts"] = [{"start": "00:00", "end": "24:00"}]
    path = directory / "estate.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def synthetic_estate_file(directory: Path, meters: int, seed: int = 1) -> Path:
    """``edge.scale.synthetic_estate`` written as an estate file, for the simulator and
    the worker alike."""
    spec = synthetic_estate(meters, seed)
    path = directory / "synthetic.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_unset=True),
                                   sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Worker:
    """``python -m dispatch worker`` with its log in a file."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.env['DISPATCH_HTTP_PORT']}/health"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "dispatch", "worker"],
                                            env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)

    def wait_active(self, timeout_s: float = 90) -> None:
        """Until it holds the lease and the control room's subscription."""
        deadline = time.monotonic() + timeout_s
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.log()
            try:
                body = httpx.get(self.health_url, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                body = {}
            if body.get("lease_held") and body.get("telemetry_subscribed"):
                return
            time.sleep(0.2)
        raise AssertionError(f"the worker did not become active: {body}\n{self.log()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no clean shutdown, no lease released
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def metrics(self) -> str:
        return httpx.get(self.health_url.replace("/health", "/metrics"), timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]


def worker(tmp_path: Path, mqtt: MqttSettings, influx: InfluxSettings, registry_url: str,
           estate_file: Path) -> Worker:
    env = {**os.environ,
           "DISPATCH_MQTT__HOST": mqtt.host, "DISPATCH_MQTT__PORT": str(mqtt.port),
           "DISPATCH_INFLUX__URL": influx.url, "DISPATCH_INFLUX__DATABASE": influx.database,
           "DISPATCH_REGISTRY_URL": registry_url, "DISPATCH_ESTATE_FILE": str(estate_file),
           "DISPATCH_HTTP_PORT": str(free_port()),
           # A killed worker's lease runs out within seconds: the restarted one takes over.
           "DISPATCH_SCHEDULER_LEASE_TTL_S": "6",
           "DISPATCH_ALARMS__WINDOW_EVERY_S": "10", "DISPATCH_ALARMS__WINDOW_GRACE_S": "3",
           # The plan and forecasts are not under test: once a day.
           "DISPATCH_PLANNING__EVERY_S": "86400", "DISPATCH_FORECAST__EVERY_S": "86400"}
    return Worker(env, tmp_path / "worker.log")


def simulator(tmp_path: Path, mqtt: MqttSettings, estate_file: Path,
              faults: Sequence[Mapping[str, Any]], *, interval_s: float = 1.0,
              ) -> subprocess.Popen[bytes]:
    """The simulator publishing every ``interval_s``, with ``faults``."""
    env = {**os.environ, "EDGE_MQTT__HOST": mqtt.host, "EDGE_MQTT__PORT": str(mqtt.port),
           "EDGE_ESTATE_FILE": str(estate_file), "EDGE_INTERVAL_S": str(interval_s),
           "EDGE_FAULTS": json.dumps([dict(f) for f in faults], default=_iso),
           "EDGE_CLIENT_ID": f"sim-{os.getpid()}-{time.monotonic_ns() % 10**6}",
           "EDGE_COMMAND_LOG_PATH": str(tmp_path / "sim-commands.sqlite"),
           "EDGE_HTTP_PORT": "0"}
    with (tmp_path / "simulator.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "edge"], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)
