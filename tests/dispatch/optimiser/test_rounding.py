"""The genset rounding's dynamic programme against brute force on short horizons."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.optimiser.rounding import _best_pattern


def feasible(pattern: tuple[int, ...], up: int, down: int, was_on: bool,
             held_on: np.ndarray) -> bool:
    state, age = was_on, max(up, down)  # the initial state is served: free to switch
    for t, now in enumerate(pattern):
        if held_on[t] and not now:
            return False
        if bool(now) != state:
            if age < (up if state else down):
                return False
            state, age = bool(now), 0
        age += 1
    return True


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.booleans(), st.integers(0, 3),
       st.lists(st.floats(-1, 1, allow_nan=False), min_size=7, max_size=7))
def test_best_pattern_is_optimal_and_feasible(up: int, down: int, was_on: bool, held: int,
                                              scores: list[float]) -> None:
    n = len(scores)
    score = np.array([scores])
    t = np.arange(n)
    held_on = (t < held) & was_on
    held_off = (t < held) & (not was_on)
    score = np.where(held_off, -np.inf, score)
    got = _best_pattern(score, held_on[None, :], np.array([up]), np.array([down]),
                        np.array([was_on]))[0]

    assert feasible(tuple(got.astype(int)), up, down, was_on, held_on)
    assert not (got & held_off).any()
    best = max(float(np.sum(score[0][np.array(p, dtype=bool)]))
               for p in itertools.product((0, 1), repeat=n)
               if feasible(p, up, down, was_on, held_on) and not (np.array(p) & held_off).any())
    assert float(np.sum(score[0][got])) == pytest.approx(best, abs=1e-9)
