"""deploy/grafana: every InfluxQL query of every dashboard returns data from a real InfluxDB
holding the demo's data; every PromQL query is valid (promtool) and names metrics the
services export.

No Grafana runs here. Its part is the substitution of its macros, done here as Grafana does
it: ``$timeFilter`` becomes the dashboard's time range in epoch milliseconds,
``$__interval`` the range over the panel's points (at least the data source's 1m), and each
template variable its current value; a query variable's own query must list that value.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from adapters.influxdb_v1 import InfluxV1Store
from edge.sim_health import SimulatorMetrics
from tests.deploy.conftest import DemoData

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Grafana's default number of points a panel asks for.
MAX_DATA_POINTS = 1000
MIN_INTERVAL_S = 60  # the InfluxDB data source's timeInterval


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def datasources() -> dict[str, dict[str, Any]]:
    text = (GRAFANA / "provisioning" / "datasources" / "estate.yml").read_text(encoding="utf-8")
    return {d["uid"]: d for d in yaml.safe_load(text)["datasources"]}


def relative_ms(expression: str, now_ms: int) -> int:
    match = re.fullmatch(r"now(?:([+-])(\d+)([mhd]))?", expression)
    assert match, f"time {expression!r} is not now, now-N[mhd] or now+N[mhd]"
    if match.group(1) is None:
        return now_ms
    unit = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}[match.group(3)]
    sign = 1 if match.group(1) == "+" else -1
    return now_ms + sign * int(match.group(2)) * unit


def interval(start_ms: int, end_ms: int) -> str:
    seconds = max(MIN_INTERVAL_S, (end_ms - start_ms) // 1000 // MAX_DATA_POINTS)
    return f"{-(-seconds // 60)}m"


def substitute(query: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        query = query.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert not re.search(r"\$\{?[A-Za-z_]", query), f"unsubstituted macro in {query}"
    return query


def influx_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{p['title']} [{t['refId']}]", t["query"]) for p in dashboard["panels"]
            for t in p["targets"] if t["datasource"]["uid"] == "estate-influxdb"]


def prometheus_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{p['title']} [{t['refId']}]", t["expr"]) for p in dashboard["panels"]
            for t in p["targets"] if t["datasource"]["uid"] == "estate-prometheus"]


def has_values(series: list[Any]) -> bool:
    return any(v is not None for s in series for row in s.values for v in row[1:])


def test_there_are_the_four_dashboards_and_each_names_a_provisioned_data_source() -> None:
    assert {p.stem for p in DASHBOARDS} == {"estate-overview", "facility", "data-path",
                                           "plan-vs-actuals"}
    sources = datasources()
    assert sources["estate-influxdb"]["type"] == "influxdb"
    assert sources["estate-influxdb"]["url"] == "http://influxdb:8086"
    assert sources["estate-influxdb"]["jsonData"]["dbName"] == "estate"
    assert sources["estate-prometheus"]["url"] == "http://prometheus:9090"
    uids = set()
    for path in DASHBOARDS:
        dashboard = load(path)
        assert dashboard["uid"] == path.stem
        for panel in dashboard["panels"]:
            uids.add(panel["datasource"]["uid"])
            uids |= {t["datasource"]["uid"] for t in panel["targets"]}
            assert panel["targets"], f"{path.stem}: {panel['title']} has no query"
    assert uids <= set(sources)
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "estate.yml")
                              .read_text(encoding="utf-8"))["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_influxql_query_returns_series_from_the_demo_data(
        demo_data: DemoData, path: Path) -> None:
    dashboard = load(path)
    now_ms = time.time_ns() // 1_000_000
    start_ms = relative_ms(dashboard["time"]["from"], now_ms)
    end_ms = relative_ms(dashboard["time"]["to"], now_ms)
    assert start_ms <= demo_data.end_ms, "the dashboard's range misses the demo's data"
    values = {"timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
              "__interval": interval(start_ms, end_ms)}
    store = InfluxV1Store(demo_data.influx)
    empty = []
    try:
        for variable in dashboard["templating"]["list"]:
            current = variable["current"]["value"]
            if variable["type"] == "query":
                listed = [str(row[1]) for s in store.query(substitute(variable["query"], values))
                          for row in s.values]
                assert current in listed, f"${variable['name']}={current!r} not in {listed}"
            values[variable["name"]] = current
        targets = influx_targets(dashboard)
        assert targets
        for title, query in targets:
            series = store.query(substitute(query, values))
            if not has_values(series):
                empty.append(title)
        print(f"{path.stem}: {len(targets) - len(empty)} of {len(targets)} queries "
              "returned series")
    finally:
        store.close()
    assert not empty, f"{path.stem}: no data for {empty}"


def test_every_promql_query_is_valid_and_names_exported_metrics(demo_data: DemoData,
                                                                tmp_path: Path) -> None:
    """Syntax by promtool (each query as a recording rule); names against what ingest (run
    in this process by the demo data), the simulator and Prometheus itself export."""
    exported = {s.name for m in REGISTRY.collect() for s in m.samples}
    exported |= {s.name for m in SimulatorMetrics(1, publishing=True).registry.collect()
                 for s in m.samples}
    exported.add("up")
    assert "ingest_readings_written_total" in exported
    rules = []
    for path in DASHBOARDS:
        for title, expr in prometheus_targets(load(path)):
            rules.append({"record": f"panel:{len(rules)}", "expr": expr})
            names = set(re.findall(r"\b([a-z_][a-z0-9_]*)(?=\s*(?:\[|\{|\)|$| ))", expr))
            metrics = {n for n in names if n.startswith(("ingest_", "simulator_", "up"))}
            assert metrics, f"{title}: no metric found in {expr}"
            assert metrics <= exported, f"{title}: {metrics - exported} not exported"
    assert rules
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "panels", "rules": rules}]}), encoding="utf-8")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus); `make deps`")
    checked = subprocess.run([promtool, "check", "rules", str(tmp_path / "panels.yml")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
