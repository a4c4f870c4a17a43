"""Merging requests into one batch and splitting the model's outputs back, by rows.

Pure functions on prepared inputs (no asyncio): `batch_key` says which requests may share a
batch, `merge` concatenates them along dimension 0, and `split` hands each caller exactly its
own rows, refusing outputs whose row count does not match the inputs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import cast

import numpy as np
import pandas as pd

from shipyard.core.errors import Internal, InvalidArgument
from shipyard.core.signatures import Prepared
from shipyard.runtimes.base import Outputs


def batch_key(inputs: Prepared) -> Hashable:
    """Requests with equal keys can be concatenated: same kind, dtypes and trailing shape."""
    if isinstance(inputs, np.ndarray):
        return ("array", inputs.dtype.str, inputs.shape[1:])
    if isinstance(inputs, pd.DataFrame):
        return ("frame", tuple(inputs.columns), tuple(str(t) for t in inputs.dtypes))
    return ("dict", tuple((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))


def rows_of(inputs: Prepared) -> int:
    """Rows of a prepared input (dimension 0); every named array must have the same count."""
    if isinstance(inputs, pd.DataFrame | np.ndarray):
        return len(inputs)
    counts = {len(v) for v in inputs.values()}
    if len(counts) > 1:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in inputs.items())
        raise InvalidArgument(f"named inputs must have the same number of rows; got {sizes}")
    return counts.pop() if counts else 0


def merge(parts: Sequence[Prepared]) -> Prepared:
    """One input holding every part's rows in order (parts share one batch key)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    # Parts share one batch key, so they are all of `first`'s kind.
    if isinstance(first, np.ndarray):
        return np.concatenate([cast(np.ndarray, p) for p in parts], axis=0)
    if isinstance(first, pd.DataFrame):
        # Callers only need their rows back in order, so the index is rebuilt 0..n-1.
        return pd.concat([cast(pd.DataFrame, p) for p in parts], ignore_index=True)
    named = [cast(dict[str, np.ndarray], p) for p in parts]
    return {k: np.concatenate([p[k] for p in named], axis=0) for k in first}


def split(outputs: Outputs, rows: Sequence[int], *, model: str) -> list[Outputs]:
    """Each part's slice of every output; Internal if an output's rows don't add up."""
    total = sum(rows)
    checked: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        got = len(array) if array.ndim else 0
        if got != total:
            raise Internal(
                f"model {model} returned {got} rows of {name!r} for {total} inputs",
                details={"output": name, "rows": got, "inputs": total},
            )
        checked[name] = array
    if len(rows) == 1:
        return [checked]
    parts: list[Outputs] = []
    start = 0
    for count in rows:
        stop = start + count
        parts.append({name: array[start:stop] for name, array in checked.items()})
        start = stop
    return parts
