"""Validation: errors raise with every reason at once, warnings are logged and returned."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from dispatch.optimiser import (
    Battery,
    DeferrableLoad,
    ProblemError,
    check_problem,
    optimise,
    validate,
)
from estate.errors import ConfigError
from tests.dispatch.optimiser.cases import random_problem


def test_a_sound_problem_has_no_issue() -> None:
    assert check_problem(random_problem(1)) == []


def test_shapes_and_unknown_facilities_are_errors() -> None:
    problem = random_problem(1)
    bad = dataclasses.replace(
        problem, import_price=np.ones(3),
        batteries=(dataclasses.replace(problem.batteries[0], facility="nowhere"),))

    with pytest.raises(ProblemError) as raised:
        validate(bad)
    assert isinstance(raised.value, ConfigError)
    assert "estate import_price: must have shape (16,), got shape (3,)" in str(raised.value)


def test_every_error_is_listed() -> None:
    problem = random_problem(1)
    bad = dataclasses.replace(problem, batteries=(
        Battery("b1", "f0", 10, 100, 5, 10, 10),  # starts below its minimum
        Battery("b2", "f0", 0, 100, 0, 1, 10, soc_terminal_kwh=90),  # cannot get there
        Battery("b2", "nowhere", 0, 100, 0, 10, 10)))
    messages = [str(i) for i in check_problem(bad) if i.level == "error"]

    assert ("b1 soc_initial_kwh: initial charge 5 kWh outside [10, 100] (soc_min_kwh, "
            "soc_max_kwh)") in messages
    assert ("b2 soc_terminal_kwh: cannot charge from 0 to 90 kWh within the horizon (steps x "
            "step_hours at charge_kw 1 and charge_efficiency 0.95)") in messages
    assert "b2 name: asset name used twice" in messages
    assert "b2 facility: unknown facility 'nowhere'" in messages


def test_warnings_are_logged_and_do_not_stop_the_optimiser(
        caplog: pytest.LogCaptureFixture) -> None:
    problem = random_problem(1)
    squeezed = dataclasses.replace(problem, deferrables=(
        DeferrableLoad("kiln", "f0", energy_kwh=500, max_kw=10, window_start=0, window_end=4),))

    with caplog.at_level(logging.WARNING):
        issues = validate(squeezed)
        plan = optimise(squeezed)
    assert [i.subject for i in issues] == ["kiln"]
    assert "cannot fit in its window" in caplog.text
    assert any(v.limit == "deferrable_energy" for v in plan.violations)


def test_strict_turns_warnings_into_errors() -> None:
    problem = random_problem(1)
    squeezed = dataclasses.replace(problem, deferrables=(
        DeferrableLoad("kiln", "f0", energy_kwh=500, max_kw=10, window_start=0, window_end=4),))
    with pytest.raises(ProblemError, match="kiln energy_kwh: 500 kWh cannot fit"):
        validate(squeezed, strict=True)


def test_a_penalty_below_the_prices_is_refused() -> None:
    problem = dataclasses.replace(random_problem(1), violation_penalty=1.0)
    with pytest.raises(ProblemError, match="estate violation_penalty: 1 does not outweigh"):
        validate(problem)


def test_optimise_refuses_a_broken_problem() -> None:
    problem = dataclasses.replace(random_problem(1), capacity_kw=float("nan"))
    with pytest.raises(ProblemError, match="capacity_kw"):
        optimise(problem)
