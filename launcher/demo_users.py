"""The demo's web accounts: on the first run an admin and an operator with random
passwords, written to ``var/web-users.json`` (mode 0600) and named in the log. Later runs
keep them. Nothing else in the product has a default account."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Final

from dispatch.accounts.roles import Role
from dispatch.registry.account_desk import add_user, list_users
from dispatch.registry.db import Registry

log = logging.getLogger(__name__)

USERS_FILE: Final = "web-users.json"
DEMO_USERS: Final = (("admin", Role.ADMIN), ("operator", Role.OPERATOR))


def demo_web_users(var: Path, registry_url: str) -> Path:
    """Make the demo's users if the registry has none of them; the file of their
    passwords either way."""
    path = var / USERS_FILE
    registry = Registry(registry_url)
    try:
        registry.migrate()
        existing = {u.username for u in list_users(registry)}
        made = {}
        for username, role in DEMO_USERS:
            if username not in existing:
                password = secrets.token_urlsafe(12)
                add_user(registry, username, password, role)
                made[username] = {"role": role.label, "password": password}
    finally:
        registry.close()
    if made:
        kept = json.loads(path.read_text()) if path.exists() else {}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(kept | made, out, indent=2)
        os.chmod(path, 0o600)
        log.info("web view users %s made; their passwords are in %s",
                 ", ".join(sorted(made)), path)
    return path
