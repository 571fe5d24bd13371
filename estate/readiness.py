"""Readiness: whether a service can do its work now, from named checks.

Each service says what it needs before it is of use (ingest: connected to the broker,
subscribed, its decoder and writer running); ``Readiness`` answers with every check by
name. Operations and tests ask a service's ``/health`` (``adapters.ops_http``) instead of
waiting a fixed time, which a loaded machine would make too short and a quiet one too long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Check = Callable[[], bool]
Details = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "ready?": every check's result, and whatever else the service tells."""

    ready: bool
    checks: Mapping[str, bool]
    details: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": dict(self.checks), **self.details}


class Readiness:
    """Named checks, all of which must pass for the service to be ready."""

    def __init__(self, checks: Mapping[str, Check], details: Details | None = None) -> None:
        if not checks:
            raise ValueError("readiness needs at least one check")
        self._checks = dict(checks)
        self._details = details

    def verdict(self) -> Verdict:
        results = {}
        for name, check in self._checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # a check that fails to answer is a check that fails
                results[name] = False
        details = self._details() if self._details is not None else {}
        return Verdict(all(results.values()), results, details)
