"""What the demo keeps in var/ across runs: broker passwords kept, the ACL brought up to
date; the web view's users made once, in a file only its owner reads."""

from __future__ import annotations

import json
from pathlib import Path

from dispatch.registry.account_desk import check_login
from dispatch.registry.db import Registry
from launcher.demo import demo_broker_security
from launcher.demo_users import demo_web_users


def test_the_demo_brings_an_older_acl_up_to_date_and_keeps_the_passwords(
        tmp_path: Path) -> None:
    """A demo's var/ from before the web view could send commands: its ACL is rewritten,
    its passwords kept."""
    first = demo_broker_security(tmp_path)
    web_block = "user service/demo/web\n"
    text = first.acl_file.read_text()
    assert "topic write estate/v1/demo/+/+/cmd/req" in text.split(web_block)[1].split("\n\n")[0]
    old = text.replace(web_block + "topic read", web_block + "# old\ntopic read")
    first.acl_file.write_text(old)
    again = demo_broker_security(tmp_path)
    assert again.acl_file.read_text() == text
    assert again.password("service/demo/web") == first.password("service/demo/web")


def test_the_demo_makes_its_users_once_with_passwords_in_a_private_file(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    path = demo_web_users(tmp_path, url)
    assert path.stat().st_mode & 0o777 == 0o600
    users = json.loads(path.read_text())
    assert {u: v["role"] for u, v in users.items()} == {"admin": "admin",
                                                        "operator": "operator"}
    assert demo_web_users(tmp_path, url) == path
    assert json.loads(path.read_text()) == users, "the second run keeps them"
    registry = Registry(url)
    try:
        for username, user in users.items():
            assert check_login(registry, username, user["password"]) is not None
    finally:
        registry.close()
