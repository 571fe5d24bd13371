"""The demo supervises its children: InfluxDB and then Mosquitto killed with SIGKILL are
each noticed at once, logged, restarted within 10 s, and no reading is lost.

The count: the simulator's /metrics says how many readings it published up to and
including a step; InfluxDB is asked how many readings it holds between two such steps. The
simulator publishes at QoS 1 from a persistent session, so paho resends what the broker had
not acknowledged; ingest spools while InfluxDB is away. The two counts must meet.

The operators' page (a real headless Chromium) shows each restart and its last exit, read
by the web view from the supervisor's status file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page
from prometheus_client.parser import text_string_to_metric_families

from estate.model import SAMPLE_ESTATE, load_estate
from tests.launcher.test_demo import demo_ports, interrupt, start_demo, wait_for_all_meters
from tests.web_login import log_in_page

# Each test runs the whole demo: every server and every service.
pytestmark = pytest.mark.servers

RESTART_LIMIT_S = 10.0
INTERVAL_MS = 2000  # the demo's meters report every 2 s
AIM_BEFORE_STEP_S = 0.15


def supervisor_status(ports: dict[str, int]) -> dict[str, Any]:
    answer = httpx.get(f"http://127.0.0.1:{ports['supervisor']}/status", timeout=5)
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def child(ports: dict[str, int], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in supervisor_status(ports)["children"]
                                 if c["name"] == name)
    return found


def simulator_checkpoint(ports: dict[str, int]) -> tuple[int, int]:
    """(readings published, through which step in ms), read in one scrape."""
    text = httpx.get(f"http://127.0.0.1:{ports['simulator']}/metrics", timeout=5).text
    samples = {s.name: s.value for f in text_string_to_metric_families(text)
               for s in f.samples}
    return (int(samples["simulator_readings_published_total"]),
            round(samples["simulator_last_step_timestamp_seconds"] * 1000))


def ingest_metric(ports: dict[str, int], name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{ports['ingest']}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


def stored_readings(ports: dict[str, int], after_ms: int, through_ms: int) -> int:
    """Readings (fields of `reading` points) stored in (after, through]; -1 if InfluxDB
    does not answer."""
    query = (f"SELECT count(*) FROM reading WHERE time > {after_ms}ms "
             f"AND time <= {through_ms}ms")
    try:
        answer = httpx.get(f"http://127.0.0.1:{ports['influx']}/query",
                           params={"db": "estate", "q": query}, timeout=10)
    except httpx.HTTPError:
        return -1
    if answer.status_code != 200:
        return -1
    series = answer.json()["results"][0].get("series", [])
    return sum(int(v) for s in series for row in s["values"] for v in row[1:] if v)


def wait_until(predicate: Any, timeout_s: float, what: str) -> float:
    """Seconds until ``predicate()`` held; fails at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def kill_and_watch_restart(ports: dict[str, int], name: str) -> float:
    before = child(ports, name)
    assert before["state"] == "running", before
    # Aimed just before the simulator's next step, so that step's packs meet the outage.
    _, last_step = simulator_checkpoint(ports)
    next_step_s = (last_step + INTERVAL_MS) / 1000
    time.sleep(max(0.0, next_step_s - AIM_BEFORE_STEP_S - time.time()))
    os.kill(before["pid"], signal.SIGKILL)
    killed = time.monotonic()

    def back() -> bool:
        now = child(ports, name)
        return now["state"] == "running" and now["pid"] != before["pid"]

    wait_until(back, 30, f"{name} restarted")
    took = time.monotonic() - killed
    after = child(ports, name)
    assert after["restarts"] == before["restarts"] + 1
    assert after["last_exit"] == "killed by SIGKILL"
    return took


def page_shows_the_restart(page: Page, ports: dict[str, int], name: str,
                           screenshot: Path) -> str:
    """Wait for the page's strip to show ``name`` running again after one restart, with
    its last exit and that exit's time (the page is in UTC); return what it shows."""
    exited_ms = round(child(ports, name)["last_exit_at"] * 1000)  # as the health gives it
    at = datetime.fromtimestamp(exited_ms / 1000, UTC).strftime("%H:%M:%S")
    pill = f'[data-service="{name}"][data-service-state="running"][data-restarts="1"]'
    page.wait_for_selector(pill, timeout=15_000)
    shown = page.locator(pill).inner_text()
    assert shown == f"{name}: running, restarted 1x, killed by SIGKILL at {at}"
    # The web view's own connections come back too (its MQTT client retries within 1.5 s).
    page.wait_for_selector('#svc-store[data-state="ok"]', timeout=30_000)
    page.wait_for_selector('#svc-broker[data-state="ok"]', timeout=30_000)
    page.wait_for_selector('#feed[data-state="ok"]', timeout=30_000)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    return shown


@pytest.mark.browser
def test_servers_killed_are_restarted_logged_and_no_reading_is_lost(
        tmp_path: Path, browser: Browser) -> None:
    ports = demo_ports()
    var = tmp_path / "var"
    meters = len(load_estate(SAMPLE_ESTATE).devices())
    demo = start_demo(var, ports)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    output = ""
    try:
        live = wait_for_all_meters(f"http://127.0.0.1:{ports['web']}", var, meters, 180)
        assert len({(v["facility"], v["device"]) for v in live["values"]}) == meters
        status = supervisor_status(ports)
        assert status["status"] == "ok", status
        assert {c["name"] for c in status["children"]} == {
            "mosquitto", "influxdb", "ingest", "dispatch", "web", "simulator"}
        assert orjson.loads((var / "supervisor.json").read_bytes())["status"] == "ok"
        users = json.loads((var / "web-users.json").read_text())
        log_in_page(page, f"http://127.0.0.1:{ports['web']}", "operator",
                    users["operator"]["password"])
        page.wait_for_selector('[data-service="simulator"][data-service-state="running"]',
                               timeout=15_000)
        assert page.locator('#svc-store[data-state="ok"]').is_visible()

        # From a step ingest has stored on: everything published after it must arrive.
        published_0, step_0 = simulator_checkpoint(ports)
        wait_until(lambda: stored_readings(ports, step_0 - 1, step_0) > 0, 30,
                   "ingest storing the simulator's readings")

        restart_times = {}
        for name in ("influxdb", "mosquitto"):
            restart_times[name] = kill_and_watch_restart(ports, name)
            back_ms = time.time_ns() // 1_000_000
            # A step after the restart reaches the store: the whole path works again.
            wait_until(lambda back_ms=back_ms: simulator_checkpoint(ports)[1] > back_ms, 30,
                       f"a step after {name} came back")
            _, step = simulator_checkpoint(ports)
            wait_until(lambda step=step: stored_readings(ports, step - 1, step) > 0, 60,
                       f"readings stored after {name} came back")
            if name == "influxdb":
                assert ingest_metric(ports, "ingest_spooled_lines_total") > 0, \
                    "ingest never met the outage: nothing was spooled"
            shown = page_shows_the_restart(page, ports, name, tmp_path / f"{name}.png")
            print(f"the page shows {shown!r} (screenshot {tmp_path / f'{name}.png'})")

        published_1, step_1 = simulator_checkpoint(ports)
        expected = published_1 - published_0
        stored = -1

        def all_stored() -> bool:
            nonlocal stored
            stored = stored_readings(ports, step_0, step_1)
            return stored >= expected

        try:
            wait_until(all_stored, 60, "every published reading stored")
        finally:
            print(f"published {expected:,} readings in steps ({step_0}, {step_1}] "
                  f"({(step_1 - step_0) / 1000:.0f} s), stored {stored:,}; restarted "
                  + ", ".join(f"{n} in {t:.1f} s" for n, t in restart_times.items()))
        assert stored == expected
        for name, took in restart_times.items():
            assert took < RESTART_LIMIT_S, f"{name} took {took:.1f} s to come back"
        assert supervisor_status(ports)["status"] == "ok"
    finally:
        page.close()
        if demo.poll() is None:
            code, output = interrupt(demo)
        else:
            output = demo.communicate()[0].decode(errors="replace")
            code = demo.returncode
    assert code == 0, output[-3000:]
    for name in ("influxdb", "mosquitto"):
        assert re.search(rf"ERROR launcher.supervisor {name} \(pid \d+\) died: killed by "
                         "SIGKILL; restarting it in", output), output[-3000:]
        assert f"{name} restarted" in output
    assert "demo stopped" in output
    assert "Traceback" not in output, output[-5000:]


def test_ctrl_c_stops_the_children_in_reverse_order(tmp_path: Path) -> None:
    """Checked through the status file: every child ends stopped, the servers last."""
    ports = demo_ports()
    var = tmp_path / "var"
    demo = start_demo(var, ports)
    meters = len(load_estate(SAMPLE_ESTATE).devices())
    try:
        # Once the page has every meter, every service is past its start-up.
        wait_for_all_meters(f"http://127.0.0.1:{ports['web']}", var, meters, 180)
        assert orjson.loads((var / "supervisor.json").read_bytes())["status"] == "ok"
    finally:
        code, output = interrupt(demo)
    assert code == 0, output[-3000:]
    final = orjson.loads((var / "supervisor.json").read_bytes())["children"]
    assert {c["state"] for c in final} == {"stopped"}
    stopped_at = [c["since"] for c in final]  # listed in the order they were started
    assert stopped_at == sorted(stopped_at, reverse=True), final
    assert "simulator stopping" in output
    assert subprocess.run(["pgrep", "-f", str(var)], capture_output=True).returncode == 1, \
        "a child of the demo outlived it"
