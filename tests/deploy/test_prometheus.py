"""deploy/prometheus: the scrape configuration and the alert rules, checked and unit-tested by
the real promtool (Debian's prometheus package, the version compose pins); the scrape
configuration is also run by a real Prometheus in tests/deploy/test_stack.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (Debian package prometheus); run `make deps`")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)


def test_the_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_fire_when_they_should_and_not_before() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_scrape_configuration_is_valid(tmp_path: Path) -> None:
    """As mounted in the container: the rule file is swapped for its path here."""
    text = (PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8")
    assert "/etc/prometheus/alerts.yml" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/alerts.yml",
                                   str(PROMETHEUS / "alerts.yml")), encoding="utf-8")
    result = promtool("check", "config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_named_for_the_issue_exist() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"IngestSpoolGrowing", "IngestDeadLettersRising", "SchedulerLeaseLost",
            "PlanFailing", "WebhookDeliveriesDead"} <= names
    tested = (PROMETHEUS / "alerts.test.yml").read_text(encoding="utf-8")
    for name in ("IngestSpoolGrowing", "IngestDeadLettersRising", "SchedulerLeaseLost",
                 "PlanFailing", "ServiceDown"):
        assert re.search(rf"alertname: {name}\b", tested), f"{name} has no unit test"
