"""Readiness from named checks."""

from __future__ import annotations

import pytest

from estate.readiness import Readiness


def test_ready_only_when_every_check_passes() -> None:
    state = {"connected": True, "subscribed": False}
    readiness = Readiness({name: (lambda name=name: state[name]) for name in state},
                          lambda: {"worker": "w1"})
    verdict = readiness.verdict()
    assert not verdict.ready
    assert verdict.as_dict() == {"ready": False, "worker": "w1",
                                 "checks": {"connected": True, "subscribed": False}}
    state["subscribed"] = True
    assert readiness.verdict().ready


def test_a_check_that_raises_is_a_check_that_fails() -> None:
    def broken() -> bool:
        raise RuntimeError("gone")

    verdict = Readiness({"ok": lambda: True, "broken": broken}).verdict()
    assert (verdict.ready, dict(verdict.checks)) == (False, {"ok": True, "broken": False})


def test_readiness_needs_a_check() -> None:
    with pytest.raises(ValueError, match="at least one check"):
        Readiness({})
