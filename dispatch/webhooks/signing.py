"""Signatures per Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` (Unix seconds)
and ``webhook-signature`` (``v1,`` + base64 of HMAC-SHA256 over ``id.timestamp.body`` with
the secret's bytes), one signature per valid secret, separated by spaces. The signing is
the ``standardwebhooks`` package's own; docs/webhooks.md gives receivers the recipe.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Final

from standardwebhooks.webhooks import Webhook

from dispatch.registry.webhook_store import SigningKeys

PREFIX: Final = "whsec_"
# 32 random bytes: the HMAC-SHA256 key size; Standard Webhooks asks for 24 to 64.
SECRET_BYTES: Final = 32


def new_secret() -> str:
    """A new secret, ``whsec_`` and base64 of random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign_headers(message_id: str, at: datetime, body: bytes, keys: SigningKeys,
                 ) -> dict[str, str]:
    """The three headers of a delivery sent at ``at``."""
    at = at.astimezone(UTC)
    text = body.decode()
    signatures = [Webhook(secret).sign(message_id, at, text) for secret in keys.valid()]
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(signatures)}
