"""Tables on disk <-> pandas/numpy: CSV, Parquet, JSON (records or split), JSON Lines, .npy.

Used by the CLI for samples and prediction inputs/outputs, and by packaging to store
reference data as Parquet for monitoring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from shipyard.core.errors import InvalidArgument

READABLE = (".csv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".npy")


def read_table(path: Path) -> pd.DataFrame | np.ndarray:
    """Read a data file by its extension; errors name the file and what went wrong."""
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise InvalidArgument(
            f"{path.name}: unsupported file type {suffix!r}; use one of {', '.join(READABLE)}"
        )
    if not path.is_file():
        raise InvalidArgument(f"{path}: no such file")
    try:
        return _read(path, suffix)
    except InvalidArgument:
        raise
    except Exception as exc:  # each reader raises its own types; the caller needs one clear line
        raise InvalidArgument(
            f"{path.name}: cannot read as {suffix[1:]}: {_first_line(exc)}"
        ) from None


def _read(path: Path, suffix: str) -> pd.DataFrame | np.ndarray:
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    if suffix == ".npy":
        array: np.ndarray = np.load(path, allow_pickle=False)
        return array
    return _read_json(orjson.loads(path.read_bytes()))


def _read_json(doc: object) -> pd.DataFrame | np.ndarray:
    if isinstance(doc, dict) and "columns" in doc and "data" in doc:
        return pd.DataFrame(doc["data"], columns=doc["columns"])
    if isinstance(doc, dict):
        return pd.DataFrame(doc)
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return pd.DataFrame.from_records(doc)
    if isinstance(doc, list):
        return np.asarray(doc)
    raise InvalidArgument(
        "JSON input must be a list of records, a list of rows, or {columns, data}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def array_columns(input_name: str | None, width: int) -> list[str]:
    """Names of a 2-D array input's columns: `<input>_<i>` for a signature's single input,
    else `f<i>`. Shared by stored reference data and the prediction log, so the two compare."""
    if input_name is None:
        return [f"f{i}" for i in range(width)]
    return [f"{input_name}_{i}" for i in range(width)]


def as_frame(data: pd.DataFrame | np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame view of model inputs or outputs, naming array columns when asked."""
    if isinstance(data, pd.DataFrame):
        return data
    array = data.reshape(len(data), -1) if data.ndim != 2 else data
    names = (
        columns
        if columns and len(columns) == array.shape[1]
        else [f"f{i}" for i in range(array.shape[1])]
    )
    return pd.DataFrame(array, columns=names)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    else:
        raise InvalidArgument(
            f"{path.name}: cannot write {suffix!r}; use .csv, .parquet, .json or .jsonl"
        )
