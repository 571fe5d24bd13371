"""``estate webhooks``: targets refused with the reason before anything is stored, the
secret written to its file (0600) and never printed or listed, rotation, disable, the
delivery log and redelivery."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatch.registry.db import Registry
from dispatch.registry.webhook_store import WebhookStore
from launcher import cli
from tests.dispatch.registries import sample_registry


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WebhookStore:
    registry = sample_registry(tmp_path)
    monkeypatch.setenv("DISPATCH_REGISTRY_URL", registry.url)
    monkeypatch.delenv("DISPATCH_WEBHOOKS__ALLOW_LOOPBACK", raising=False)
    return WebhookStore(registry)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["webhooks", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/", "target refused: http://169.254.169.254 refused: "
                                "169.254.169.254 is a link-local address"),
    ("http://localhost:8080/hook", "target refused: http://localhost:8080 refused: "
                                   "localhost resolves to"),
    ("http://10.0.0.7/hook", "10.0.0.7 is a private address"),
])
def test_refused_targets_say_why_and_store_nothing(store: WebhookStore, tmp_path: Path,
                                                   url: str, reason: str) -> None:
    code, _, err = run("add", url, "--secret-file", str(tmp_path / "s"))
    assert code == 2
    assert reason in err
    assert store.subscriptions() == []
    assert not (tmp_path / "s").exists()


def test_add_list_rotate_disable_without_showing_a_secret(
        store: WebhookStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_WEBHOOKS__ALLOW_LOOPBACK", "true")
    secret_file = tmp_path / "secrets" / "tickets.whsec"
    code, out, err = run("add", "http://127.0.0.1:9/hooks/T0/token?x=1", "--name", "tickets",
                         "--type", "alarm.*", "--severity", "high", "--tenant", "textile",
                         "--secret-file", str(secret_file))
    assert code == 0, err
    secret = secret_file.read_text().strip()
    assert secret.startswith("whsec_")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret not in out
    [subscription] = store.subscriptions()
    assert subscription.facility == "textile"
    assert subscription.event_filter == {"types": ["alarm.*"], "severities": ["high"],
                                         "facilities": []}
    code, listed, _ = run("list")
    assert "tickets" in listed
    assert "whsec" not in listed
    assert "token" not in listed  # the URL's path can hold one: not shown
    code, out, _ = run("rotate-secret", str(subscription.id), "--secret-file",
                       str(secret_file))
    assert code == 0
    new_secret = secret_file.read_text().strip()
    assert new_secret != secret
    assert new_secret not in out
    assert secret not in out
    assert "old secret valid until" in out
    code, out, _ = run("disable", str(subscription.id))
    assert code == 0
    assert not store.subscriptions()[0].enabled


def test_bad_filter_and_unknown_ids(store: WebhookStore, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_WEBHOOKS__ALLOW_LOOPBACK", "true")
    code, _, err = run("add", "http://127.0.0.1:9/", "--type", "alarm.exploded",
                       "--secret-file", str(tmp_path / "s"))
    assert code == 2
    assert "unknown event type 'alarm.exploded'" in err
    code, _, err = run("add", "http://127.0.0.1:9/", "--tenant", "nowhere",
                       "--secret-file", str(tmp_path / "s"))
    assert code == 2
    assert "no facility 'nowhere'" in err
    for args in (["disable", "99"], ["redeliver", "99"], ["rotate-secret", "99",
                                                          "--secret-file", str(tmp_path / "s")]):
        code, _, err = run(*args)
        assert code == 2
        assert "no webhook" in err


def test_the_delivery_log_and_redelivery(store: WebhookStore, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from dispatch.registry.base import utc_now
    from dispatch.registry.webhook_queue import Result, claim, fan_out, finish, take
    from dispatch.webhooks.payloads import route
    from tests.dispatch.webhooks.support import raise_alarms

    monkeypatch.setenv("DISPATCH_WEBHOOKS__ALLOW_LOOPBACK", "true")
    assert run("add", "http://127.0.0.1:9/", "--secret-file", str(tmp_path / "s"))[0] == 0
    registry = Registry(os.environ["DISPATCH_REGISTRY_URL"])
    raise_alarms(registry, 0, 1)
    now = utc_now()
    assert fan_out(registry, route, now) == 1
    [sid] = claim(registry, "w", now, now, 1)
    batch = take(registry, sid, now, 10)
    [pending] = batch.deliveries
    finish(registry, "w", batch, [Result(pending.delivery_id, "failed", now, 500, 12.5,
                                         "HTTP 500: down", None)])
    code, out, _ = run("deliveries", "--attempts")
    assert code == 0
    assert "alarm.raised" in out
    assert "dead" in out
    assert "HTTP 500: down" in out
    assert pending.message_id in out
    code, out, _ = run("deliveries", "--state", "dead")
    assert pending.message_id in out
    code, out, _ = run("redeliver", str(pending.delivery_id))
    assert code == 0
    [again] = store.deliveries()
    assert (again.state, again.attempts, again.message_id) == ("pending", 0,
                                                               pending.message_id)
    assert again.next_attempt_at <= datetime.now(UTC)
    registry.close()
