"""``estate user ...``: the web view's accounts from the command line, on the registry of
``DISPATCH_REGISTRY_URL`` (or ``--url``). The first admin is made here; there is no default
account and no default password. The same operations are the admin routes of the API
(``/api/users``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dispatch.accounts.roles import MIN_PASSWORD, ROLE_NAMES, Role
from estate.errors import AccountError, ConfigError, RegistryError

if TYPE_CHECKING:  # the registry (SQLAlchemy) is imported when a command runs
    from dispatch.registry.db import Registry

app = typer.Typer(help="The web view's users, roles and API tokens (docs/security.md).",
                  no_args_is_help=True)

Url = Annotated[str | None, typer.Option(help="Registry URL; default DISPATCH_REGISTRY_URL")]
PasswordFile = Annotated[Path | None, typer.Option(
    help="Read the password from this file's first line instead of a prompt")]


def _registry(url: str | None) -> Registry:
    from dispatch.registry.db import Registry
    from dispatch.settings import DispatchSettings

    registry = Registry(url or DispatchSettings().registry_url)
    registry.migrate()
    return registry


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    return str(typer.prompt(f"password (at least {MIN_PASSWORD} characters)",
                            hide_input=True, confirmation_prompt=True))


def _run(action: str, url: str | None, call: Callable[[Registry], object]) -> None:
    """Run ``call(registry)``; a refusal is one line on stderr and exit code 1."""
    registry = _registry(url)
    try:
        message = call(registry)
    except (AccountError, ConfigError, RegistryError, OSError) as exc:
        typer.echo(f"estate user {action}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        registry.close()
    typer.echo(str(message))


def _role(text: str) -> Role:
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("add")
def add(username: str,
        role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLE_NAMES)}")],
        facility: Annotated[str | None, typer.Option(
            help="Bind the user to this facility of the estate only")] = None,
        password_file: PasswordFile = None, url: Url = None) -> None:
    """Add a user (the first admin: ``estate user add admin --role admin``)."""
    from dispatch.registry.account_desk import add_user
    from dispatch.settings import DispatchSettings
    from estate.model import load_estate

    chosen = _role(role)
    if facility is not None:
        spec = load_estate(DispatchSettings().estate_file)
        if facility not in {f.id for f in spec.facilities}:
            raise typer.BadParameter(f"no facility {facility!r} in estate {spec.id!r}")
    password = _password(password_file)
    _run("add", url, lambda r: f"added {add_user(r, username, password, chosen, facility)}")


@app.command("list")
def list_command(url: Url = None) -> None:
    """Every user with role, facility and state."""
    from dispatch.registry.account_desk import list_users

    def lines(registry: Registry) -> str:
        return "\n".join(f"{u.username}\t{u.role.label}\t{u.facility or '-'}\t"
                         f"{'disabled' if u.disabled else 'enabled'}"
                         for u in list_users(registry)) or "no users"

    _run("list", url, lines)


@app.command("set-role")
def set_role(username: str, role: str, url: Url = None) -> None:
    """Give a user another role."""
    from dispatch.registry.account_desk import change_user

    chosen = _role(role)
    _run("set-role", url, lambda r: change_user(r, username, role=chosen))


@app.command("disable")
def disable(username: str, url: Url = None) -> None:
    """Disable a user: its sessions end and its tokens stop working."""
    from dispatch.registry.account_desk import change_user

    _run("disable", url, lambda r: change_user(r, username, disabled=True))


@app.command("enable")
def enable(username: str, url: Url = None) -> None:
    """Enable a disabled user again."""
    from dispatch.registry.account_desk import change_user

    _run("enable", url, lambda r: change_user(r, username, disabled=False))


@app.command("reset-password")
def reset_password(username: str, password_file: PasswordFile = None,
                   url: Url = None) -> None:
    """Set a new password; the user's sessions end."""
    from dispatch.registry.account_desk import set_password

    password = _password(password_file)
    _run("reset-password", url,
         lambda r: f"new password for {set_password(r, username, password).username}")


@app.command("token")
def token(username: str, name: Annotated[str, typer.Option(help="What the token is for")],
          url: Url = None) -> None:
    """Make an API token for a machine; it is printed once, only here."""
    from dispatch.registry.account_desk import issue_token

    def made(registry: Registry) -> str:
        info, secret = issue_token(registry, username, name)
        return (f"token {info.id} ({info.name}) of {username}; send it as "
                f"'Authorization: Bearer <token>'. It is shown only now:\n{secret}")

    _run("token", url, made)


@app.command("tokens")
def tokens(username: str, url: Url = None) -> None:
    """A user's API tokens (never the tokens themselves)."""
    from dispatch.registry.account_desk import list_tokens

    _run("tokens", url, lambda r: "\n".join(
        f"{t.id}\t{t.name}\t{t.hint}…\t{'revoked' if t.revoked else 'active'}"
        for t in list_tokens(r, username)) or "no tokens")


@app.command("revoke-token")
def revoke(token_id: int, url: Url = None) -> None:
    """Revoke an API token: it stops working at once."""
    from dispatch.registry.account_desk import revoke_token

    _run("revoke-token", url, lambda r: f"revoked token {revoke_token(r, token_id).id}")
