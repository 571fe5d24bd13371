"""Roles, password hashes and the in-process limits, without I/O."""

from __future__ import annotations

import importlib.util

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST, RFC_9106_LOW_MEMORY

from dispatch.accounts import credentials
from dispatch.accounts.credentials import (
    hash_password,
    new_api_token,
    token_digest,
    verify_password,
)
from dispatch.accounts.limits import Allowance, FailureLimiter, StreamSlots
from dispatch.accounts.roles import Role, check_password, check_username


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.SUPERVISOR < Role.ADMIN
    assert Role.parse(" Operator ") is Role.OPERATOR
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("root")
    assert check_username("ana.k@site-2") == "ana.k@site-2"
    for bad in ("Ana", "", "-ana", "a" * 65, "ana smith", "ana:x"):
        with pytest.raises(ValueError, match="username"):
            check_username(bad)
    with pytest.raises(ValueError, match="12 to 256"):
        check_password("short")
    with pytest.raises(ValueError, match="12 to 256"):
        check_password("x" * 257)


def test_passwords_are_salted_argon2id_and_tokens_kept_as_digests() -> None:
    first, second = hash_password("a long password"), hash_password("a long password")
    assert first.startswith("$argon2id$")
    assert first != second, "salted"
    assert verify_password(first, "a long password")
    assert not verify_password(first, "a long passwore")
    assert not verify_password(None, "a long password")
    assert not verify_password("not a hash", "a long password")
    token = new_api_token()
    assert token.startswith("edt_")
    assert len(token) > 40
    assert token_digest(token) != token
    assert len(token_digest(token)) == 64


def test_failures_are_limited_in_a_sliding_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(Allowance(3, 60), max_keys=2, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("ana") == 0
        limiter.failed("ana")
        now[0] += 1
    assert limiter.retry_after("ana") == pytest.approx(57)
    now[0] = 60.5
    assert limiter.retry_after("ana") == 0, "the first failure left the window"
    limiter.failed("ana")
    assert limiter.retry_after("ana") > 0
    limiter.succeeded("ana")
    assert limiter.retry_after("ana") == 0
    # Memory is bounded: the oldest key goes first.
    for key in ("a", "b", "c"):
        for _ in range(3):
            limiter.failed(key)
    assert limiter.retry_after("a") == 0
    assert limiter.retry_after("c") > 0


def test_stream_slots_per_session_and_in_all() -> None:
    slots = StreamSlots(per_key=2, total=3)
    assert slots.acquire("s1") is None
    assert slots.acquire("s1") is None
    assert slots.acquire("s1") == "at most 2 live streams per session"
    assert slots.acquire("s2") is None
    assert slots.acquire("s3") == "the web view serves at most 3 live streams"
    slots.release("s1")
    assert slots.acquire("s3") is None
    assert slots.open == 3


def test_the_services_hash_at_rfc_9106_low_memory_and_rehash_weaker_hashes() -> None:
    """The suite hashes at argon2-cffi's cheapest profile in its own processes
    (tests/conftest.py); the module as the services load it keeps the production
    parameters, and a hash made with weaker ones is flagged for rehashing at login."""
    spec = importlib.util.spec_from_file_location("fresh_credentials", credentials.__file__)
    assert spec is not None
    assert spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    production = fresh._hasher
    assert (production.time_cost, production.memory_cost, production.parallelism) == (
        RFC_9106_LOW_MEMORY.time_cost, RFC_9106_LOW_MEMORY.memory_cost,
        RFC_9106_LOW_MEMORY.parallelism)
    weak = PasswordHasher.from_parameters(CHEAPEST).hash("a long password")
    assert fresh.verify_password(weak, "a long password")
    assert fresh.needs_rehash(weak)
    assert not fresh.needs_rehash(fresh.hash_password("a long password"))
