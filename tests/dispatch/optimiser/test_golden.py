"""Stored problems and their optimal objectives (CBC on the PuLP formulation, gap 0)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dispatch.optimiser import SolveOptions, optimise
from tests.dispatch.optimiser.checker import check
from tests.dispatch.optimiser.serial import from_json, to_json

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_there_are_golden_cases() -> None:
    assert len(GOLDEN) >= 4


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_objective(path: Path) -> None:
    golden = load(path)
    problem = from_json(golden["problem"])
    plan = optimise(problem, SolveOptions(mip_rel_gap=0.0, time_limit_s=60))

    assert math.isclose(plan.objective, golden["objective"], rel_tol=1e-6)
    assert str(plan.status) == golden["status"]
    assert [v.message for v in plan.violations] == golden["violations"]
    assert check(problem, plan) == []


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_problem_round_trips(path: Path) -> None:
    golden = load(path)
    assert to_json(from_json(golden["problem"])) == golden["problem"]
