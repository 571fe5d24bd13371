"""Signatures verify with the recipe of docs/webhooks.md and with the ``standardwebhooks``
reference verifier; a tampered body, a stale timestamp or a wrong secret does not; after a
rotation both secrets verify until the old one's time is up."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatch.registry.webhook_store import SigningKeys
from dispatch.webhooks.signing import new_secret, sign_headers

DOCS = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
BODY = b'{"specversion":"1.0","id":"msg_1","type":"estate.alarm.raised","data":{"v":1}}'

Verify = Callable[[str, dict[str, str], bytes], bool]


@pytest.fixture(scope="module")
def documented() -> Verify:
    """The verifying function of docs/webhooks.md, as a receiver would paste it."""
    text = DOCS.read_text()
    block = re.search(r"<!-- recipe -->\s*```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/webhooks.md has no recipe block"
    scope: dict[str, Any] = {}
    exec(compile(block.group(1), str(DOCS), "exec"), scope)
    return scope["verify"]  # type: ignore[no-any-return]


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_")
    assert a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


def test_signature_verifies_with_the_recipe_and_the_reference(documented: Verify) -> None:
    secret = new_secret()
    headers = sign_headers("msg_1", datetime.now(UTC), BODY, SigningKeys(secret, None))
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert documented(secret, headers, BODY)
    assert Webhook(secret).verify(BODY, headers)["data"] == {"v": 1}


@pytest.mark.parametrize("change", ["body", "timestamp", "secret", "id"])
def test_tampered_stale_or_foreign_fails_both(documented: Verify, change: str) -> None:
    secret = new_secret()
    at = datetime.now(UTC)
    body = BODY
    if change == "timestamp":  # stale: signed (correctly) ten minutes ago
        at -= timedelta(minutes=10)
    headers = sign_headers("msg_1", at, BODY, SigningKeys(secret, None))
    if change == "body":
        body = BODY.replace(b'"v":1', b'"v":2')
    elif change == "secret":
        secret = new_secret()
    elif change == "id":
        headers["webhook-id"] = "msg_2"
    assert not documented(secret, headers, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_after_a_rotation_both_secrets_verify_then_only_the_new(documented: Verify) -> None:
    old, new = new_secret(), new_secret()
    headers = sign_headers("msg_9", datetime.now(UTC), BODY, SigningKeys(new, old))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert documented(secret, headers, BODY)
        Webhook(secret).verify(BODY, headers)
    later = sign_headers("msg_9", datetime.now(UTC), BODY, SigningKeys(new, None))
    assert documented(new, later, BODY)
    assert not documented(old, later, BODY)


def test_signing_keys_never_show_their_secrets() -> None:
    keys = SigningKeys(new_secret(), new_secret())
    assert "whsec" not in repr(keys)
    assert "whsec" not in str(keys)
