"""Request payloads of `shipyard loadtest`: R rows per request, shaped by the model's metadata.

Rows are synthetic (seeded, so runs are comparable) or taken from a data file in chunks of R,
wrapping around. A model takes one [-1, k] tensor or, when columnar, one [-1] tensor per
column. Bodies are OIP v2 JSON or binary tensors; gRPC sends the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from shipyard.codecs import oip_binary
from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import numpy_dtype
from shipyard.core.tensors import Tensor

VARIANTS = 8  # distinct synthetic requests cycled through


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


def input_specs(metadata: dict[str, Any]) -> list[InputSpec]:
    """The inputs of `GET /v2/models/{m}`, checked."""
    raw = metadata.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("the model's metadata lists no inputs; cannot shape requests")
    specs = []
    for entry in raw:
        try:
            spec = InputSpec(str(entry["name"]), str(entry["datatype"]), tuple(entry["shape"]))
        except (KeyError, TypeError):
            raise InvalidArgument(f"malformed input in the model's metadata: {entry!r}") from None
        numpy_dtype(spec.datatype)  # unknown datatypes fail here, with the known ones listed
        specs.append(spec)
    return specs


def _shape(spec: InputSpec, rows: int) -> tuple[int, ...]:
    """The spec's shape with R rows: the first -1 is the batch, other -1s become 1."""
    if not spec.shape:
        return (rows,)
    first = rows if spec.shape[0] == -1 else spec.shape[0]
    return (first, *(1 if d == -1 else d for d in spec.shape[1:]))


def _synthetic(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = numpy_dtype(spec.datatype)
    if spec.datatype == "BYTES":
        letters = rng.integers(0, 26, size=shape).ravel().tolist()
        return np.asarray([chr(97 + i).encode() for i in letters], dtype=object).reshape(shape)
    if spec.datatype == "BOOL":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def synthetic_batches(specs: list[InputSpec], rows: int, seed: int = 0) -> list[list[Tensor]]:
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(VARIANTS):
        tensors = []
        for spec in specs:
            shape = _shape(spec, rows)
            tensors.append(Tensor(spec.name, spec.datatype, shape, _synthetic(spec, shape, rng)))
        batches.append(tensors)
    return batches


def data_batches(
    specs: list[InputSpec], rows: int, data: pd.DataFrame | np.ndarray, limit: int = 64
) -> list[list[Tensor]]:
    """Requests of R rows each from a table (wrapping around), at most `limit` distinct."""
    if len(data) == 0:
        raise InvalidArgument("--data: the file has no rows")
    columns = _columns(specs, data)
    count = min(limit, max(1, -(-len(data) // rows)))
    batches = []
    for b in range(count):
        index = (np.arange(rows) + b * rows) % len(data)
        tensors = []
        for spec, column in zip(specs, columns, strict=True):
            shape = _shape(spec, rows)
            values = _as_dtype(spec, column[index]).reshape(shape)
            tensors.append(Tensor(spec.name, spec.datatype, shape, values))
        batches.append(tensors)
    return batches


def _columns(specs: list[InputSpec], data: pd.DataFrame | np.ndarray) -> list[np.ndarray]:
    """One array per input: the whole table for one [-1, k] input, else a column each."""
    if len(specs) == 1 and len(specs[0].shape) > 1:
        array = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
        return [array]
    if isinstance(data, pd.DataFrame):
        missing = [s.name for s in specs if s.name not in data.columns]
        if missing:
            raise InvalidArgument(f"--data: no column for input(s) {', '.join(missing)}")
        return [data[s.name].to_numpy() for s in specs]
    array = np.asarray(data)
    if array.ndim != 2 or array.shape[1] != len(specs):
        raise InvalidArgument(
            f"--data: the model takes {len(specs)} columns; the file has shape {array.shape}"
        )
    return [array[:, i] for i in range(len(specs))]


def _as_dtype(spec: InputSpec, values: np.ndarray) -> np.ndarray:
    if spec.datatype == "BYTES":
        return np.asarray([str(v).encode() for v in values.ravel()], dtype=object).reshape(
            values.shape
        )
    try:
        return np.ascontiguousarray(values, dtype=numpy_dtype(spec.datatype))
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"--data: values for input {spec.name!r} are not {spec.datatype}"
        ) from None


def json_body(tensors: list[Tensor]) -> tuple[bytes, dict[str, str]]:
    inputs = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.shape),
            "data": _flat(t),
        }
        for t in tensors
    ]
    body = orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    return body, {"Content-Type": "application/json"}


def _flat(t: Tensor) -> Any:
    if t.datatype == "BYTES":
        return [v.decode() for v in t.data.ravel().tolist()]
    return t.data.reshape(-1)


def binary_body(tensors: list[Tensor]) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request that also asks for binary outputs."""
    inputs = []
    raws: list[bytes | memoryview] = []
    for t in tensors:
        raw = oip_binary.raw_view(t)
        raws.append(raw)
        inputs.append(
            {
                "name": t.name,
                "datatype": t.datatype,
                "shape": list(t.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header = orjson.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}})
    headers = {
        "Content-Type": oip_binary.CONTENT_TYPE,
        oip_binary.HEADER: str(len(header)),
    }
    return b"".join([header, *raws]), headers
