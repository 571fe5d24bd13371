"""``estate dr`` and ``estate statements`` against the real InfluxDB and a registry file:
an order entered, refused when wrong, opted out of, its tenants' terms set; a month's
statements written as CSV and PDF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from estate.settings import InfluxSettings
from launcher import cli

pytestmark = pytest.mark.servers


@pytest.fixture
def env(influx_settings: InfluxSettings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DISPATCH_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.sqlite'}")
    monkeypatch.setenv("DISPATCH_INFLUX__URL", influx_settings.url)
    monkeypatch.setenv("DISPATCH_INFLUX__DATABASE", influx_settings.database)
    result = CliRunner().invoke(cli.app, ["registry", "load"])
    assert result.exit_code == 0, result.output
    return tmp_path


def test_orders_terms_and_statements_from_the_command_line(env: Path) -> None:
    runner = CliRunner()
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    window = ["--start", start.isoformat(), "--end", (start + timedelta(hours=2)).isoformat()]
    terms = runner.invoke(cli.app, ["dr", "contract", "foods", "--priority", "critical"])
    assert terms.exit_code == 0, terms.output
    assert runner.invoke(cli.app, ["dr", "price", "water", "1.8"]).exit_code == 0

    added = runner.invoke(cli.app, ["dr", "add", "--cap", "1500", *window, "--payment", "0.3",
                                    "--by", "ana"])
    assert added.exit_code == 0, added.output
    assert "order 1 (operator): import at most 1,500 kW" in added.output
    assert "foods" in added.output
    assert "unassigned" in added.output

    wrong = runner.invoke(cli.app, ["dr", "add", "--cut", "-5", *window])
    assert wrong.exit_code == 2
    assert "kW must be a number" in wrong.output

    out = runner.invoke(cli.app, ["dr", "opt", "1", "out", "--by", "ana"])
    assert out.exit_code == 0, out.output
    listed = runner.invoke(cli.app, ["dr", "list"])
    assert "split, opted out" in listed.output

    month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    written = runner.invoke(cli.app, ["statements", "month", month, "--out",
                                      str(env / "statements")])
    assert written.exit_code == 0, written.output
    assert (env / "statements" / f"statements-{month}.pdf").read_bytes().startswith(b"%PDF")
    assert "estate's bill from its meters" in written.output
