"""``estate user ...`` on a real SQLite registry: the first admin from a password file or
a prompt, no default account, roles, disabling, tokens shown once."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dispatch.accounts.roles import Role
from dispatch.registry.account_desk import check_login, list_users, token_identity
from dispatch.registry.db import Registry
from launcher import cli

PASSWORD = "a long admin password"


def test_the_first_admin_and_the_rest_of_the_accounts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    runner = CliRunner()

    def run(*args: str, given: str | None = None) -> tuple[int, str]:
        result = runner.invoke(cli.app, ["user", *args, "--url", url], input=given)
        return result.exit_code, result.output

    assert run("list") == (0, "no users\n"), "no default account"
    secret = tmp_path / "admin.password"
    secret.write_text(PASSWORD + "\n")
    code, out = run("add", "admin", "--role", "admin", "--password-file", str(secret))
    assert code == 0, out
    assert "admin (admin, the whole estate)" in out
    # The second user's password from the prompt, typed twice.
    code, out = run("add", "ana", "--role", "operator",
                    given="an operator password\nan operator password\n")
    assert code == 0, out
    code, out = run("add", "ana", "--role", "viewer", "--password-file", str(secret))
    assert code == 1
    assert "exists already" in out
    short = tmp_path / "short"
    short.write_text("short\n")
    assert run("add", "bo", "--role", "viewer", "--password-file", str(short))[0] == 1
    assert run("add", "bo", "--role", "emperor", "--password-file", str(secret))[0] == 2
    assert run("set-role", "ana", "supervisor")[0] == 0
    assert run("disable", "admin")[1].startswith("estate user disable: the last enabled")
    code, out = run("token", "ana", "--name", "scada")
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    assert token.startswith("edt_")
    assert token not in run("tokens", "ana")[1]

    registry = Registry(url)
    try:
        assert [(u.username, u.role) for u in list_users(registry)] == [
            ("admin", Role.ADMIN), ("ana", Role.SUPERVISOR)]
        assert check_login(registry, "admin", PASSWORD) is not None
        assert check_login(registry, "ana", "an operator password") is not None
        identity = token_identity(registry, token)
        assert identity is not None
        assert identity.user.username == "ana"
        assert run("revoke-token", "1")[0] == 0
        assert token_identity(registry, token) is None
        assert run("disable", "ana")[0] == 0
        assert check_login(registry, "ana", "an operator password") is None
    finally:
        registry.close()

