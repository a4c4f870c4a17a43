"""The flat, columnar form of prediction events shared by the Parquet files and the reader:
one row per event, event fields as columns, inputs and outputs as list columns named
`input.<name>` / `output.<name>`."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from shipyard.core.events import PredictionEvent

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
        maps = [getattr(e, side) for e in events]
        keys = sorted({key for values in maps for key in values})
        for key in keys:
            # None where an event lacks the column (sampled out, or absent).
            cells = [values.get(key) for values in maps]
            arrays.append(pa.array([None if c is None else list(c) for c in cells]))
            names.append(prefix + key)
    return pa.Table.from_arrays(arrays, names=names)


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
