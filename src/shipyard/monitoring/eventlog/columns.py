"""The flat, columnar form of prediction events shared by the Parquet files and the reader:
one row per event, event fields as columns, inputs and outputs as list columns named
`input.<name>` / `output.<name>`.

Numeric columns stay numpy arrays from the data plane to here (`storable`) and become one Arrow
list column per batch with a single concatenation: converting each value to a Python object
cost ~80 µs per 20-column event on the serving worker's GIL, as much as answering it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.core.events import NUMERIC_KINDS, Column, MatrixColumns, PredictionEvent

INPUT_PREFIX = "input."
OUTPUT_PREFIX = "output."
BASE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("deployment", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("subject", pa.string()),
        ("latency_ms", pa.float64()),
    ]
)


def to_table(events: Sequence[PredictionEvent]) -> pa.Table:
    arrays = [pa.array([getattr(e, f.name) for e in events], type=f.type) for f in BASE_SCHEMA]
    names = list(BASE_SCHEMA.names)
    for prefix, side in ((INPUT_PREFIX, "inputs"), (OUTPUT_PREFIX, "outputs")):
        for key, array in _side_columns([getattr(e, side) for e in events]):
            arrays.append(array)
            names.append(prefix + key)
    return pa.Table.from_arrays(arrays, names=names)


def _side_columns(maps: list[Mapping[str, Column]]) -> list[tuple[str, pa.Array]]:
    """One list column per name, in name order."""
    matrices = _same_matrices(maps)
    if matrices is not None:
        return _matrix_columns(matrices)
    keys = sorted({key for values in maps for key in values})
    # None where an event lacks the column (sampled out, or absent).
    return [(key, _list_column([values.get(key) for values in maps])) for key in keys]


def _same_matrices(maps: list[Mapping[str, Column]]) -> list[MatrixColumns] | None:
    """The batch's inputs when each is a numeric matrix with the same columns, else None."""
    matrices = [m for m in maps if isinstance(m, MatrixColumns)]
    if not matrices or len(matrices) < len(maps):
        return None
    kinds = {m.matrix.dtype.kind for m in matrices}
    names = {m.names for m in matrices}
    return matrices if len(kinds) == 1 and kinds <= NUMERIC_KINDS and len(names) == 1 else None


def _matrix_columns(matrices: list[MatrixColumns]) -> list[tuple[str, pa.Array]]:
    """Each column of the stacked matrices, split per event by its row count: one
    concatenation for the whole batch."""
    target = _WIDENED[matrices[0].matrix.dtype.kind]
    stacked = np.concatenate([m.matrix for m in matrices]).astype(target, copy=False)
    index = _offsets([len(m.matrix) for m in matrices])
    names = matrices[0].names
    return [
        (name, pa.ListArray.from_arrays(index, pa.array(np.ascontiguousarray(stacked[:, i]))))
        for i, name in sorted(enumerate(names), key=lambda pair: pair[1])
    ]


# The type each kept kind is written as: what lists of Python values gave, so old and new parts
# share a schema.
_WIDENED = {"f": np.dtype(np.float64), "i": np.dtype(np.int64), "b": np.dtype(np.bool_)}
assert set(_WIDENED) == NUMERIC_KINDS


def _offsets(lengths: list[int]) -> pa.Array:
    """Arrow list offsets of cells of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.array(offsets)


def is_numeric_array(values: object) -> bool:
    """A 1-D or 2-D (one row per request row, e.g. class probabilities) float, signed-int or
    bool numpy array: kept as it is until written."""
    return (
        isinstance(values, np.ndarray)
        and values.ndim in (1, 2)
        and values.dtype.kind in NUMERIC_KINDS
    )


def storable(values: Column) -> Column:
    """`values` as an event keeps them once scrubbed: numeric arrays as they are (no copy),
    anything else as a list of Python values."""
    return values if is_numeric_array(values) else plain(values)


def plain(values: Any) -> list[Any]:
    """Python values (numpy arrays and scalars become lists, ints, floats), JSON-ready."""
    if hasattr(values, "tolist"):
        listed = values.tolist()
        return listed if isinstance(listed, list) else [listed]
    return [v.item() if hasattr(v, "item") else v for v in values]


def _list_column(cells: list[Column | None]) -> pa.Array:
    """One list per event (None where an event has no such column)."""
    present = [c for c in cells if c is not None]
    arrays = [c for c in present if isinstance(c, np.ndarray) and is_numeric_array(c)]
    kinds = {a.dtype.kind for a in arrays}
    rows_shapes = {a.shape[1:] for a in arrays}  # () for 1-D, (width,) for 2-D
    if not arrays or len(arrays) < len(present) or len(kinds) != 1 or len(rows_shapes) != 1:
        return pa.array([None if c is None else plain(c) for c in cells])
    target = _WIDENED[kinds.pop()]
    offsets = _offsets([0 if c is None else len(c) for c in cells])
    values = np.concatenate(arrays).astype(target, copy=False)  # one cast, not one per event
    leaves: pa.Array = pa.array(values.reshape(-1))
    if values.ndim == 2:  # each row a list of `width` values, as nested Python lists give
        width = values.shape[1]
        inner = (
            np.arange(0, values.size + 1, width, dtype=np.int32)
            if width
            else np.zeros(len(values) + 1, dtype=np.int32)
        )
        leaves = pa.ListArray.from_arrays(pa.array(inner), leaves)
    mask = pa.array([c is None for c in cells]) if len(present) < len(cells) else None
    return pa.ListArray.from_arrays(offsets, leaves, mask=mask)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """`table` cast to `schema` (missing columns as nulls), or None when it cannot be: new
    columns or incompatible types, which start a new file instead."""
    if not set(table.column_names) <= set(schema.names):
        return None
    arrays = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    try:
        return pa.Table.from_arrays(arrays, names=schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
