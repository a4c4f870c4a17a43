"""A request's numeric matrix goes to the log unsplit (`MatrixColumns`): what is stored is the
same as for the same values split into columns, and privacy still drops and hashes columns."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from eventlog_support import KEY, event

from shipyard.core.events import MatrixColumns
from shipyard.monitoring.eventlog.columns import to_table
from shipyard.monitoring.eventlog.privacy import Privacy, digest
from shipyard.serving.tap import LazyColumns, input_columns, logged_inputs


def _rows(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def test_numeric_arrays_go_unsplit_and_the_rest_lazily() -> None:
    matrix = _rows(0, 2)
    kept = logged_inputs(matrix, None)
    assert isinstance(kept, MatrixColumns) and kept.matrix is matrix
    assert list(kept) == ["f0", "f1", "f2"] and list(kept["f1"]) == list(matrix[:, 1])
    single = logged_inputs(np.array([1, 2]), None)
    assert isinstance(single, MatrixColumns) and list(single["f0"]) == [1, 2]
    for other in (np.array([["a"], ["b"]]), pd.DataFrame({"a": [1.0]}), np.zeros((1, 2, 2))):
        assert isinstance(logged_inputs(other, None), LazyColumns)


def test_a_batch_of_matrices_stores_what_split_columns_store() -> None:
    privacy = Privacy(KEY)
    matrices = [_rows(i, n) for i, n in enumerate((1, 3, 2))]
    whole = [replace(event(i), inputs=logged_inputs(m, None)) for i, m in enumerate(matrices)]
    split = [
        replace(e, inputs=input_columns(m, None)) for e, m in zip(whole, matrices, strict=True)
    ]
    scrubbed = [stored for e in whole for stored in privacy.scrub(e)]
    assert all(isinstance(e.inputs, MatrixColumns) for e in scrubbed)  # passed through
    fast, slow = to_table(scrubbed), to_table([s for e in split for s in privacy.scrub(e)])
    assert fast.schema == slow.schema
    assert fast.equals(slow)
    assert fast.column("input.f2").to_pylist()[1] == [float(v) for v in matrices[1][:, 2]]


def test_mixed_batches_take_the_general_path() -> None:
    privacy = Privacy(KEY)
    events = [
        replace(event(0), inputs=logged_inputs(_rows(0, 1), None)),
        replace(event(1), inputs=logged_inputs(np.array([[1, 2, 3]]), None)),  # ints
        replace(event(2), inputs={"f0": [0.5]}),
    ]
    table = to_table([s for e in events for s in privacy.scrub(e)])
    assert table.column("input.f0").to_pylist()[1:] == [[1.0], [0.5]]
    assert table.column("input.f1").to_pylist()[2] is None


def test_excluded_and_hashed_columns_of_a_matrix() -> None:
    privacy = Privacy(KEY, exclude=["f0"], hash_columns=["f2"])
    matrix = _rows(4, 2)
    (stored,) = privacy.scrub(replace(event(0), inputs=logged_inputs(matrix, None)))
    assert set(stored.inputs) == {"f1", "f2"}
    assert stored.inputs["f2"] == [digest(KEY, v) for v in matrix[:, 2].tolist()]
    assert list(stored.inputs["f1"]) == list(matrix[:, 1])
