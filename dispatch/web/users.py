"""Account management for admins: users (add, change, reset a password) and API tokens
(make one, shown once; list; revoke). The same as ``estate user ...`` on the command line.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts.roles import MAX_PASSWORD, MIN_PASSWORD, USERNAME_PATTERN, Role
from dispatch.registry.account_desk import (
    add_user,
    change_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
)
from dispatch.web.auth import Admin
from dispatch.web.deps import RegistryDep, Spec
from estate.topics import IDENTIFIER_PATTERN

RoleName = Annotated[str, Field(pattern="^(viewer|operator|supervisor|admin)$")]
Username = Annotated[str, Path(pattern=f"^{USERNAME_PATTERN}$")]
Password = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]

router = APIRouter(tags=["users"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=f"^{USERNAME_PATTERN}$")
    password: Password
    role: RoleName
    facility: str | None = Field(None, pattern=f"^{IDENTIFIER_PATTERN}$",
                                 description="bind the user to this facility only")


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleName | None = None
    facility: str | None = Field(None, pattern=f"^{IDENTIFIER_PATTERN}$")
    unbind: bool = Field(False, description="the whole estate again (no facility)")
    disabled: bool | None = None


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="what the token is for")


def _facility(spec: Spec, facility: str | None) -> str | None:
    if facility is not None and facility not in {f.id for f in spec.facilities}:
        raise HTTPException(422, f"no facility {facility!r} in estate {spec.id!r}")
    return facility


@router.get("/api/users")
def users(_: Admin, registry: RegistryDep) -> dict[str, Any]:
    """Every user, with role, facility and whether disabled."""
    return {"users": [u.as_dict() for u in list_users(registry)]}


@router.post("/api/users", status_code=201)
def new_user(body: NewUser, _: Admin, registry: RegistryDep, spec: Spec) -> dict[str, Any]:
    """Add a user (409 if the name is taken)."""
    user = add_user(registry, body.username, body.password, Role.parse(body.role),
                    _facility(spec, body.facility))
    return user.as_dict()


@router.patch("/api/users/{username}")
def change(username: Username, body: UserChange, _: Admin, registry: RegistryDep,
           spec: Spec) -> dict[str, Any]:
    """Set a user's role, facility or disabled flag; disabling ends its sessions."""
    user = change_user(registry, username,
                       role=None if body.role is None else Role.parse(body.role),
                       facility=_facility(spec, body.facility), unbind=body.unbind,
                       disabled=body.disabled)
    return user.as_dict()


@router.post("/api/users/{username}/password")
def reset_password(username: Username, body: NewPassword, _: Admin,
                   registry: RegistryDep) -> dict[str, Any]:
    """Set a new password; the user's sessions end."""
    return set_password(registry, username, body.password).as_dict()


@router.get("/api/users/{username}/tokens")
def tokens(username: Username, _: Admin, registry: RegistryDep) -> dict[str, Any]:
    """The user's API tokens (never the tokens themselves)."""
    return {"tokens": [t.as_dict() for t in list_tokens(registry, username)]}


@router.post("/api/users/{username}/tokens", status_code=201)
def new_token(username: Username, body: NewToken, _: Admin,
              registry: RegistryDep) -> dict[str, Any]:
    """A new API token for the user: ``token`` is shown in this answer only."""
    info, token = issue_token(registry, username, body.name)
    return {**info.as_dict(), "token": token}


@router.delete("/api/tokens/{token_id}")
def revoke(token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: Admin,
           registry: RegistryDep) -> dict[str, Any]:
    """Revoke an API token: it stops working at once."""
    return revoke_token(registry, token_id).as_dict()
