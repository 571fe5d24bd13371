"""What dispatch does with accounts: add and change users, log in and out, check a
session or an API token. Each function takes the ``Registry`` and hands out frozen
records, never rows; a refusal is ``AccountError`` (with ``AccountNotFound`` and
``AccountConflict`` for the web view's 404 and 409).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from dispatch.accounts.credentials import (
    hash_password,
    needs_rehash,
    new_api_token,
    new_session_token,
    token_digest,
    verify_password,
)
from dispatch.accounts.roles import Role, check_password, check_username
from dispatch.registry.accounts import ApiTokenRow, UserRow, WebSessionRow
from dispatch.registry.base import utc_now
from dispatch.registry.db import Registry
from estate.errors import AccountConflict, AccountError, AccountNotFound

# A token's last use is written at most this often: a busy machine client must not turn
# every read into a write.
LAST_USED_EVERY: Final = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    facility: str | None
    disabled: bool

    def as_dict(self) -> dict[str, object]:
        return {"username": self.username, "role": self.role.label,
                "facility": self.facility, "disabled": self.disabled}

    def __str__(self) -> str:
        scope = f"facility {self.facility}" if self.facility else "the whole estate"
        state = ", disabled" if self.disabled else ""
        return f"{self.username} ({self.role.label}, {scope}{state})"


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """A new session: the cookie's token (kept by the browser only) and its CSRF token."""

    token: str
    csrf_token: str
    expires_at: datetime
    user: User


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: the user, and the session (with its CSRF token) or token it
    came with. ``key`` names the session or token, for per-session limits."""

    user: User
    key: str
    csrf_token: str | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    username: str
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "username": self.username, "name": self.name,
                "hint": self.hint, "created_at": self.created_at.isoformat(),
                "last_used_at": (None if self.last_used_at is None
                                 else self.last_used_at.isoformat()),
                "revoked": self.revoked}


def _user(row: UserRow) -> User:
    return User(row.id, row.username, Role.parse(row.role), row.facility_id, row.disabled)


def _row(session: Session, username: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.username == username))
    if row is None:
        raise AccountNotFound(f"no user {username[:64]!r}")
    return row


def _check_binding(role: Role, facility: str | None) -> None:
    if role is Role.ADMIN and facility is not None:
        raise AccountError("an admin manages the whole estate: it cannot be bound to a "
                           "facility")


def add_user(registry: Registry, username: str, password: str, role: Role,
             facility: str | None = None) -> User:
    """A new, enabled user; ``AccountConflict`` if the name is taken."""
    try:
        check_username(username)
        check_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from exc
    _check_binding(role, facility)
    hashed = hash_password(password)
    with registry.writing() as session:
        if session.scalar(select(UserRow.id).where(UserRow.username == username)):
            raise AccountConflict(f"user {username!r} exists already")
        row = UserRow(username=username, password_hash=hashed, role=role.label,
                      facility_id=facility, disabled=False)
        session.add(row)
        session.flush()
        return _user(row)


def list_users(registry: Registry) -> list[User]:
    with registry.reading() as session:
        return [_user(r) for r in session.scalars(select(UserRow).order_by(UserRow.username))]


def get_user(registry: Registry, username: str) -> User:
    with registry.reading() as session:
        return _user(_row(session, username))


def _active_admins(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(UserRow).where(
        UserRow.role == Role.ADMIN.label, UserRow.disabled.is_(False))) or 0)


def change_user(registry: Registry, username: str, *, role: Role | None = None,
                facility: str | None = None, unbind: bool = False,
                disabled: bool | None = None) -> User:
    """Set a user's role, facility (``unbind``: none) or disabled flag. Disabling ends
    its sessions; the last enabled admin can be neither disabled nor demoted."""
    with registry.writing() as session:
        row = _row(session, username)
        new_role = role if role is not None else Role.parse(row.role)
        new_facility = None if unbind else (facility if facility is not None
                                             else row.facility_id)
        _check_binding(new_role, new_facility)
        was_admin = row.role == Role.ADMIN.label and not row.disabled
        row.role, row.facility_id = new_role.label, new_facility
        if disabled is not None:
            row.disabled = disabled
        session.flush()
        if was_admin and _active_admins(session) == 0:
            raise AccountConflict("the last enabled admin cannot be disabled or demoted")
        if row.disabled:
            _revoke_sessions(session, row.id)
        return _user(row)


def set_password(registry: Registry, username: str, password: str) -> User:
    """A new password; every session of the user ends (its tokens stay)."""
    try:
        check_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from exc
    hashed = hash_password(password)
    with registry.writing() as session:
        row = _row(session, username)
        row.password_hash = hashed
        row.password_changed_at = utc_now()
        _revoke_sessions(session, row.id)
        return _user(row)


def _revoke_sessions(session: Session, user_id: int) -> None:
    session.execute(update(WebSessionRow).where(
        WebSessionRow.user_id == user_id, WebSessionRow.revoked_at.is_(None)
    ).values(revoked_at=utc_now()))


def check_login(registry: Registry, username: str, password: str) -> User | None:
    """The user if ``password`` is theirs and the account is enabled, else None (the same
    time either way). A hash made with older parameters is renewed."""
    with registry.reading() as session:
        row = session.scalar(select(UserRow).where(UserRow.username == username[:64]))
        stored = None if row is None else row.password_hash
    if not verify_password(stored, password[:1024]) or row is None or row.disabled:
        return None
    if stored is not None and needs_rehash(stored):
        with registry.writing() as session:
            session.execute(update(UserRow).where(UserRow.id == row.id).values(
                password_hash=hash_password(password)))
    return _user(row)


def open_session(registry: Registry, user: User, lifetime: timedelta,
                 address: str = "") -> SessionGrant:
    """A new session of ``user``; expired sessions are cleared on the way."""
    token, csrf = new_session_token(), new_session_token()
    now = utc_now()
    with registry.writing() as session:
        session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < now))
        session.add(WebSessionRow(user_id=user.id, token_hash=token_digest(token),
                                  csrf_token=csrf, address=address[:64], created_at=now,
                                  expires_at=now + lifetime))
    return SessionGrant(token, csrf, now + lifetime, user)


def session_identity(registry: Registry, token: str) -> Identity | None:
    """Who holds the session ``token``: None if unknown, revoked, expired or disabled."""
    with registry.reading() as session:
        found = session.execute(
            select(WebSessionRow, UserRow).join(UserRow, UserRow.id == WebSessionRow.user_id)
            .where(WebSessionRow.token_hash == token_digest(token[:200]))).first()
    if found is None:
        return None
    web_session, row = found
    if (web_session.revoked_at is not None or web_session.expires_at <= utc_now()
            or row.disabled):
        return None
    return Identity(_user(row), f"session:{web_session.id}", web_session.csrf_token)


def close_session(registry: Registry, token: str) -> None:
    """Log out: the session ``token`` is revoked (nothing happens if it is unknown)."""
    with registry.writing() as session:
        session.execute(update(WebSessionRow).where(
            WebSessionRow.token_hash == token_digest(token[:200]),
            WebSessionRow.revoked_at.is_(None)).values(revoked_at=utc_now()))


def issue_token(registry: Registry, username: str, name: str) -> tuple[TokenInfo, str]:
    """A new API token of the user: its record and the token itself, shown only now."""
    name = name.strip()[:100] or "token"
    token = new_api_token()
    with registry.writing() as session:
        row = _row(session, username)
        token_row = ApiTokenRow(user_id=row.id, name=name, token_hash=token_digest(token),
                                hint=token[:10])
        session.add(token_row)
        session.flush()
        return _token(token_row, username), token


def _token(row: ApiTokenRow, username: str) -> TokenInfo:
    return TokenInfo(row.id, username, row.name, row.hint, row.created_at, row.last_used_at,
                     row.revoked_at is not None)


def list_tokens(registry: Registry, username: str) -> list[TokenInfo]:
    with registry.reading() as session:
        row = _row(session, username)
        return [_token(t, username) for t in session.scalars(
            select(ApiTokenRow).where(ApiTokenRow.user_id == row.id).order_by(ApiTokenRow.id))]


def revoke_token(registry: Registry, token_id: int) -> TokenInfo:
    with registry.writing() as session:
        found = session.execute(select(ApiTokenRow, UserRow.username).join(
            UserRow, UserRow.id == ApiTokenRow.user_id).where(ApiTokenRow.id == token_id)
        ).first()
        if found is None:
            raise AccountNotFound(f"no API token {token_id}")
        row, username = found
        if row.revoked_at is None:
            row.revoked_at = utc_now()
        return _token(row, username)


def token_identity(registry: Registry, token: str) -> Identity | None:
    """Who holds the API ``token``: None if unknown, revoked or its user disabled."""
    digest = token_digest(token[:200])
    with registry.reading() as session:
        found = session.execute(select(ApiTokenRow, UserRow).join(
            UserRow, UserRow.id == ApiTokenRow.user_id).where(ApiTokenRow.token_hash == digest)
        ).first()
    if found is None:
        return None
    token_row, row = found
    if token_row.revoked_at is not None or row.disabled:
        return None
    now = utc_now()
    if token_row.last_used_at is None or now - token_row.last_used_at > LAST_USED_EVERY:
        with registry.writing() as session:
            session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_row.id)
                            .values(last_used_at=now))
    return Identity(_user(row), f"token:{token_row.id}", None)
