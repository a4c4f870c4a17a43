"""Row-level checks of one chunk: which rows the model can take, and why the others cannot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.signatures import Prepared, numpy_dtype
from shipyard.jobs.layout import Layout


@dataclass(slots=True)
class CheckedChunk:
    """The model input for the valid rows, and a reason (or None) for every row."""

    data: Prepared
    valid: np.ndarray
    reasons: np.ndarray

    @property
    def error_count(self) -> int:
        return int((~self.valid).sum())


FLOATS = frozenset({"FP16", "FP32", "FP64"})


def check_chunk(layout: Layout, table: pa.Table) -> CheckedChunk:
    rows = table.num_rows
    reasons = np.full(rows, None, dtype=object)
    valid = np.ones(rows, dtype=bool)
    values: dict[str, np.ndarray] = {}
    for name, datatype in zip(layout.features, layout.datatypes, strict=True):
        column = table.column(name)
        if datatype == "BYTES":
            values[name] = np.asarray(column.to_pandas(), dtype=object)
            continue
        if datatype in FLOATS and pa.types.is_floating(column.type):
            values[name] = column.to_numpy()  # the common case: nothing to check, no copy
            continue
        numbers, bad = _numbers(column)
        _blame(reasons, valid, bad, f"column {name!r}: not a number")
        if datatype not in FLOATS:
            missing = np.isnan(numbers) & ~bad
            _blame(reasons, valid, missing, f"column {name!r}: missing value, {datatype} expected")
            fractional = ~np.isnan(numbers) & (numbers != np.round(numbers))
            _blame(
                reasons,
                valid,
                fractional,
                f"column {name!r}: fractional value, {datatype} expected",
            )
        values[name] = numbers
    return CheckedChunk(_model_input(layout, values, valid), valid, reasons)


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (null -> NaN) and a mask of values that are not numbers at all."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            cast = pc.cast(column, pa.float64())
        except pa.ArrowInvalid:
            raw = pd.Series(column.to_pandas(), dtype=object)
            parsed = pd.to_numeric(raw.str.strip(), errors="coerce")
            blank = raw.isna() | (raw.str.strip() == "")
            bad = (parsed.isna() & ~blank).to_numpy()
            return parsed.to_numpy(dtype=np.float64, na_value=np.nan), bad
    else:
        cast = pc.cast(column, pa.float64())
    numbers = np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)
    return numbers, np.zeros(len(numbers), dtype=bool)


def _blame(reasons: np.ndarray, valid: np.ndarray, mask: np.ndarray, reason: str) -> None:
    """Give `reason` to the rows in `mask` that have none yet (the first problem wins)."""
    if mask.any():
        reasons[mask & valid] = reason
        valid &= ~mask


def _model_input(layout: Layout, values: dict[str, np.ndarray], valid: np.ndarray) -> Prepared:
    everything = bool(valid.all())
    typed = {
        name: (values[name] if everything else values[name][valid]).astype(
            numpy_dtype(datatype), copy=False
        )
        for name, datatype in zip(layout.features, layout.datatypes, strict=True)
    }
    if layout.columnar:
        return pd.DataFrame(typed, copy=False)
    if not typed:
        return np.empty((int(valid.sum()), 0))
    return np.column_stack([typed[name] for name in layout.features])
