"""Password hashes (argon2id) and the random secrets of sessions and API tokens.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile:
3 passes over 64 MiB), so a stolen registry does not give the passwords away. Session and
API tokens are 32 random bytes: they cannot be guessed, so a plain SHA-256 of them is what
the registry keeps, and a lookup by that hash needs no slow hashing per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# 32 bytes of randomness, as the broker's passwords: far beyond guessing.
TOKEN_BYTES: Final = 32
# API tokens carry a prefix so a leaked one is recognised in a log or a scanner.
API_TOKEN_PREFIX: Final = "edt_"

_hasher = PasswordHasher()
# Verified when the account does not exist, so the answer takes as long either way.
_DUMMY_HASH: Final = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; PHC string format)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` (no such account) takes the
    same time and is False."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)


def new_session_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What the registry keeps of a session or API token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "replace"),
                               expected.encode("utf-8", "replace"))
