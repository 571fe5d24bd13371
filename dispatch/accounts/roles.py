"""Roles, lowest first: each may do what the roles below it may.

- ``viewer``: read every page and API answer of its scope; change nothing.
- ``operator``: also approve and reject plans (the commands they send).
- ``supervisor``: an operator with the authority of the shift; today the same rights as an
  operator (the shift log and handover pages of the control room will use it).
- ``admin``: also manage the accounts: add, disable, set roles, reset passwords, tokens.

A user may be bound to one facility (a tenant's own staff): it then sees that facility's
data only, in every route, and nothing of the estate as a whole.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Final

# Usernames are kept as given, compared as given: lower case, so "Ana" and "ana" cannot be
# two accounts. The audit log keeps "operator:<username>" in 100 characters.
USERNAME_PATTERN: Final = r"[a-z0-9][a-z0-9._@-]{0,63}"
_USERNAME = re.compile(f"^{USERNAME_PATTERN}$")
# A password long enough to resist guessing, and short enough that hashing it is bounded.
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 256


class Role(IntEnum):
    """A user's role; a higher value may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    SUPERVISOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: one of "
                             f"{', '.join(r.label for r in cls)}") from None


ROLE_NAMES: Final = tuple(r.label for r in Role)


def check_username(username: str) -> str:
    """``username`` if it is a valid one, else ``ValueError`` with the rule."""
    if not _USERNAME.match(username):
        raise ValueError(f"a username is 1-64 of a-z 0-9 . _ @ - and starts with a letter "
                         f"or digit (got {username[:80]!r})")
    return username


def check_password(password: str) -> str:
    """``password`` if its length is allowed, else ``ValueError``."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password
