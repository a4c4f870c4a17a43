"""The MLflow scoring server protocol: `POST /invocations` bodies and their responses.

JSON bodies carry exactly one of `dataframe_split`, `dataframe_records`, `instances` or
`inputs`, plus optional `params` (other keys are ignored, as MLflow does); CSV bodies carry
a header row. Responses are `{"predictions": ...}` shaped like MLflow's own.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.codecs.jsonarrays import dumps, infer_array, to_jsonable
from shipyard.codecs.limits import DEFAULT_LIMITS, Limits, check_body_size, load_json, show
from shipyard.core.errors import InvalidArgument, UnsupportedMedia
from shipyard.core.tensors import EMPTY

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_JSON = frozenset({"application/json"})
_CSV = frozenset({"text/csv", "application/csv"})
_SPLIT_KEYS = frozenset({"columns", "data", "index"})

MlflowData = pd.DataFrame | np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class MlflowInput:
    """What the model is called with: a DataFrame, an array or named arrays, and params."""

    data: MlflowData
    params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


def decode_invocations(
    body: bytes, content_type: str | None, limits: Limits = DEFAULT_LIMITS
) -> MlflowInput:
    media = (content_type or "").partition(";")[0].strip().lower()
    if media in _CSV:
        return MlflowInput(_read_csv(body, limits))
    if media not in _JSON:
        raise UnsupportedMedia(
            f"unsupported Content-Type {content_type!r}; use application/json or text/csv"
        )
    doc = load_json(body, limits)
    if type(doc) is not dict:
        raise InvalidArgument(f"body must be a JSON object with one of {', '.join(FORMATS)}")
    present = [k for k in FORMATS if k in doc]
    if len(present) != 1:
        got = f"got {', '.join(present)}" if present else "got none"
        raise InvalidArgument(f"body must have exactly one of {', '.join(FORMATS)}; {got}")
    params = doc.get("params")
    if params is not None and type(params) is not dict:
        raise InvalidArgument(f"'params' must be an object; got {show(params)}")
    return MlflowInput(_decode(present[0], doc[present[0]], limits), params or EMPTY)


def _decode(key: str, value: object, limits: Limits) -> MlflowData:
    if key == "dataframe_split":
        return _split_frame(value, limits)
    if key == "dataframe_records":
        return _records_frame(value, limits)
    if key == "instances":
        return _instances(value, limits)
    if type(value) is dict:
        return _named_arrays("inputs", value, limits)
    return infer_array("inputs", value, limits.max_elements)


def _split_frame(value: object, limits: Limits) -> pd.DataFrame:
    if type(value) is not dict or not _SPLIT_KEYS.issuperset(value) or "data" not in value:
        raise InvalidArgument("'dataframe_split' must be an object with columns, data and index")
    data, columns, index = value["data"], value.get("columns"), value.get("index")
    if type(data) is not list or not all(type(row) is list for row in data):
        raise InvalidArgument("'dataframe_split.data' must be a list of rows (lists)")
    width = len(columns) if type(columns) is list else len(data[0]) if data else 0
    if columns is not None and (type(columns) is not list or not _all_str(columns)):
        raise InvalidArgument("'dataframe_split.columns' must be a list of strings")
    if any(len(row) != width for row in data):
        raise InvalidArgument(f"'dataframe_split.data': every row must have {width} values")
    if index is not None and (type(index) is not list or len(index) != len(data)):
        raise InvalidArgument("'dataframe_split.index' must be a list with one label per row")
    _check_cells(len(data), width, limits)
    return _frame(lambda: pd.DataFrame(data, columns=columns, index=index))


def _records_frame(value: object, limits: Limits) -> pd.DataFrame:
    if type(value) is not list or not all(type(r) is dict for r in value):
        raise InvalidArgument("'dataframe_records' must be a list of objects")
    # Distinct keys per record would make rows x keys cells: bound the union first.
    columns: dict[str, None] = {}
    for record in value:
        columns.update(dict.fromkeys(record))
        _check_cells(len(value), len(columns), limits)
    return _frame(lambda: pd.DataFrame.from_records(value, columns=list(columns)))


def _instances(value: object, limits: Limits) -> np.ndarray | dict[str, np.ndarray]:
    if type(value) is list and value and type(value[0]) is dict:
        if not all(type(r) is dict and r.keys() == value[0].keys() for r in value):
            raise InvalidArgument("'instances': every object must have the same keys")
        _check_cells(len(value), len(value[0]), limits)
        columns = {k: [r[k] for r in value] for k in value[0]}
        return _named_arrays("instances", columns, limits)
    return infer_array("instances", value, limits.max_elements)


def _named_arrays(where: str, value: dict[str, Any], limits: Limits) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    budget = limits.max_elements
    for name, column in value.items():
        out[name] = array = infer_array(f"{where}[{name!r}]", column, budget)
        budget -= array.size
    return out


def _read_csv(body: bytes, limits: Limits) -> pd.DataFrame:
    check_body_size(body, limits)
    if not body.strip():
        raise InvalidArgument("CSV body is empty; expected a header row and data rows")
    header = body.split(b"\n", 1)[0]
    _check_cells(body.count(b"\n") + 1, header.count(b",") + 1, limits)  # an upper bound
    frame = _frame(lambda: pd.read_csv(io.BytesIO(body), engine="c", low_memory=False))
    return frame


def _frame(build: Any) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = build()
    except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[:1]
        raise InvalidArgument(f"cannot build a table: {first[0][:200] if first else exc}") from None
    return frame


def _check_cells(rows: int, columns: int, limits: Limits) -> None:
    if rows * columns > limits.max_elements:
        raise InvalidArgument(
            f"table of {rows} rows x {columns} columns; the limit is {limits.max_elements} values"
        )


def _all_str(values: list[Any]) -> bool:
    return all(type(v) is str for v in values)


def encode_predictions(values: np.ndarray | Mapping[str, np.ndarray] | pd.DataFrame) -> bytes:
    """`{"predictions": ...}` as MLflow's scoring server writes it.

    An array becomes (nested) lists; a DataFrame becomes records (one object per row), and
    so do named 1-D outputs of equal length, which are the columns of a table. Other named
    outputs stay a dict of lists, which is what MLflow writes for a dict.
    """
    return dumps({"predictions": _predictions(values)})


def _predictions(values: np.ndarray | Mapping[str, np.ndarray] | pd.DataFrame) -> Any:
    if isinstance(values, pd.DataFrame):
        return values.to_dict(orient="records")  # exactly what MLflow does
    if isinstance(values, np.ndarray):
        return to_jsonable(values)
    arrays = {k: np.asarray(v) for k, v in values.items()}
    lengths = {a.shape[0] if a.ndim == 1 else -1 for a in arrays.values()}
    if len(lengths) == 1 and -1 not in lengths:
        return _records(arrays)
    return {k: to_jsonable(a) for k, a in arrays.items()}


def _records(columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    names = list(columns)
    cells = [_as_list(a) for a in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*cells, strict=True)]


def _as_list(array: np.ndarray) -> list[Any]:
    value = to_jsonable(array)
    return value.tolist() if isinstance(value, np.ndarray) else list(value)
