"""A linear model held as arrays: variables are index blocks, constraints sparse blocks.

``LinearModel.add_variables`` reserves a block of column indices (any shape) with bounds,
costs and integrality; ``add_constraints`` appends a block of rows given as *terms*, each a
triple (row within the block, column, coefficient) built by ``term``. Nothing holds one
Python object per variable or per row; ``arrays`` stacks everything into one CSC matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from dispatch.optimiser.problem import FloatArray, IntArray

ArrayLike = float | npt.ArrayLike
Term = tuple[IntArray, IntArray, FloatArray]


def term(cols: IntArray, coeffs: ArrayLike = 1.0, rows: IntArray | None = None) -> Term:
    """Columns ``cols`` with ``coeffs`` (broadcast to their shape) in rows ``rows``.

    ``rows`` are indices within the constraint block; None means "aligned": the block has
    the shape of ``cols`` and element i of ``cols`` goes to row i.
    """
    cols = np.asarray(cols, dtype=np.int64)
    if rows is None:
        rows = np.arange(cols.size, dtype=np.int64).reshape(cols.shape)
    values = np.broadcast_to(np.asarray(coeffs, dtype=np.float64), cols.shape)
    return (np.asarray(rows, dtype=np.int64).ravel(), cols.ravel(), values.ravel())


@dataclass(frozen=True, slots=True)
class ModelArrays:
    """The model in the form solvers take: min c·x + offset, lb <= x <= ub, rl <= Ax <= ru."""

    cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    integer: npt.NDArray[np.bool_]
    matrix: sp.csc_matrix
    row_lower: FloatArray
    row_upper: FloatArray
    offset: float

    @property
    def num_cols(self) -> int:
        return int(self.cost.size)

    @property
    def num_rows(self) -> int:
        return int(self.row_lower.size)


class LinearModel:
    """Blocks of variables and constraints, kept as arrays until ``arrays`` stacks them."""

    def __init__(self) -> None:
        self.variables: dict[str, IntArray] = {}
        self.constraints: dict[str, IntArray] = {}
        self.offset = 0.0
        self._num_cols = 0
        self._num_rows = 0
        self._col_parts: list[tuple[FloatArray, FloatArray, FloatArray, bool]] = []
        self._row_bounds: list[tuple[FloatArray, FloatArray]] = []
        self._entries: list[Term] = []

    @property
    def num_cols(self) -> int:
        return self._num_cols

    @property
    def num_rows(self) -> int:
        return self._num_rows

    def add_variables(self, name: str, shape: tuple[int, ...], lower: ArrayLike = 0.0,
                      upper: ArrayLike = np.inf, cost: ArrayLike = 0.0,
                      integer: bool = False) -> IntArray:
        """Reserve a block of ``shape`` columns; returns their indices in that shape."""
        if name in self.variables:
            raise ValueError(f"variable block {name!r} defined twice")
        size = int(np.prod(shape, dtype=np.int64))
        index = np.arange(self._num_cols, self._num_cols + size, dtype=np.int64).reshape(shape)
        self._num_cols += size

        def flat(value: ArrayLike) -> FloatArray:
            return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).ravel()

        self._col_parts.append((flat(cost), flat(lower), flat(upper), integer))
        self.variables[name] = index
        return index

    def add_constraints(self, name: str, lower: ArrayLike, upper: ArrayLike,
                        terms: Sequence[Term], shape: tuple[int, ...] | None = None) -> IntArray:
        """Append rows ``lower <= sum(terms) <= upper``, shaped like the bounds (or ``shape``)."""
        if name in self.constraints:
            raise ValueError(f"constraint block {name!r} defined twice")
        if shape is None:
            shape = np.broadcast_shapes(np.shape(lower), np.shape(upper))
        low = np.broadcast_to(np.asarray(lower, dtype=np.float64), shape).ravel()
        up = np.broadcast_to(np.asarray(upper, dtype=np.float64), shape).ravel()
        offset = self._num_rows
        for rows, cols, values in terms:
            if rows.size and (rows.min() < 0 or rows.max() >= low.size):
                raise ValueError(f"constraint block {name!r}: a term's rows lie outside its "
                                 f"{low.size} rows (give its shape)")
            self._entries.append((rows + offset, cols, values))
        index = np.arange(offset, offset + low.size, dtype=np.int64).reshape(shape)
        self._num_rows += low.size
        self._row_bounds.append((low, up))
        self.constraints[name] = index
        return index

    def column_bounds(self) -> tuple[FloatArray, FloatArray]:
        """The lower and upper bounds of every column so far."""
        if not self._col_parts:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([p[1] for p in self._col_parts]),
                np.concatenate([p[2] for p in self._col_parts]))

    def bounds(self, index: IntArray) -> tuple[FloatArray, FloatArray]:
        """The lower and upper bounds of columns ``index`` (in its shape)."""
        lower, upper = self.column_bounds()
        return lower[index], upper[index]

    def add_cost(self, offset: float) -> None:
        """A constant in the objective (the model's costs are relative to it)."""
        self.offset += offset

    def arrays(self) -> ModelArrays:
        """Stack the blocks: one CSC matrix (duplicates summed, zeros dropped)."""
        def cat(parts: list[FloatArray]) -> FloatArray:
            return np.concatenate(parts) if parts else np.zeros(0)

        cost = cat([p[0] for p in self._col_parts])
        integer = (np.concatenate([np.full(p[0].size, p[3]) for p in self._col_parts])
                   if self._col_parts else np.zeros(0, dtype=bool))
        if self._entries:
            rows = np.concatenate([e[0] for e in self._entries])
            cols = np.concatenate([e[1] for e in self._entries])
            vals = np.concatenate([e[2] for e in self._entries])
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
            vals = np.zeros(0)
        matrix = sp.csc_matrix((vals, (rows, cols)), shape=(self._num_rows, self._num_cols))
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return ModelArrays(
            cost=cost, col_lower=cat([p[1] for p in self._col_parts]),
            col_upper=cat([p[2] for p in self._col_parts]), integer=integer, matrix=matrix,
            row_lower=cat([b[0] for b in self._row_bounds]),
            row_upper=cat([b[1] for b in self._row_bounds]), offset=self.offset)
