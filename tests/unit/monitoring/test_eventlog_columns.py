"""The columnar form of a batch of events: numpy cells concatenated per column give the same
table (types and values) as lists of Python values, with missing cells as nulls."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from eventlog_support import event

from shipyard.monitoring.eventlog.columns import to_table


def _batch(cells: list[Any]) -> pa.Table:
    events = [replace(event(i), inputs={} if c is None else {"x": c}) for i, c in enumerate(cells)]
    return to_table(events)


@pytest.mark.parametrize(
    ("arrays", "python", "arrow"),
    [
        ([np.array([1.5], np.float32), np.array([2.0, 3.0])], [[1.5], [2.0, 3.0]], pa.float64()),
        ([np.array([1], np.int8), np.array([-2], np.int64)], [[1], [-2]], pa.int64()),
        ([np.array([True]), np.array([False, True])], [[True], [False, True]], pa.bool_()),
        (
            [np.array([[0.25, 0.75]], np.float32), np.array([[0.5, 0.5], [1.0, 0.0]])],
            [[[0.25, 0.75]], [[0.5, 0.5], [1.0, 0.0]]],
            pa.list_(pa.float64()),
        ),
    ],
    ids=["floats", "ints", "bools", "rows-of-probabilities"],
)
def test_numpy_cells_write_what_python_lists_write(
    arrays: list[np.ndarray], python: list[list[Any]], arrow: pa.DataType
) -> None:
    fast, slow = _batch([*arrays, None]), _batch([*python, None])
    assert fast.column("input.x").type == slow.column("input.x").type == pa.list_(arrow)
    assert fast.column("input.x").to_pylist() == [*python, None]
    assert fast.schema == slow.schema
    assert fast.column("input.x").equals(slow.column("input.x"))


@pytest.mark.parametrize(
    "cells",
    [
        [np.array([1.5]), [2.5]],  # a list among arrays
        [np.array([1.5]), np.array([2])],  # float and int arrays in one column
        [np.array(["a"]), np.array(["b"])],  # strings
        [np.array([[1.0, 2.0]]), np.array([[3.0, 4.0, 5.0]])],  # 2-D of different widths
        [np.array([[[1.0]]]), np.array([[[2.0]]])],  # 3-D
    ],
    ids=["mixed-containers", "mixed-kinds", "strings", "2-d-widths", "3-d"],
)
def test_other_cells_take_the_plain_path(cells: list[Any]) -> None:
    expected = [c.tolist() if isinstance(c, np.ndarray) else c for c in cells]
    assert _batch(cells).column("input.x").to_pylist() == expected


def test_a_column_no_event_has_is_all_nulls() -> None:
    table = to_table([event(0), replace(event(1), inputs={})])
    assert table.column("input.amount").to_pylist() == [[0.0], None]
