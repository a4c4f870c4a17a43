"""Typed OIP tensor contents (`InferTensorContents`) <-> numpy arrays.

Each datatype travels in exactly one repeated field, flattened row-major. Narrow integer types
share the 32-bit fields (INT8/INT16/INT32 in `int_contents`, UINT8/UINT16/UINT32 in
`uint_contents`), so their values are range-checked here. FP16 has no typed field: it travels
only in raw form, and a typed request must not use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import numpy_dtype
from shipyard.core.tensors import Tensor

from ._generated import open_inference_grpc_pb2 as pb

FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_NARROW = frozenset({"INT8", "INT16", "UINT8", "UINT16"})


def typed(datatype: str) -> bool:
    """Whether a datatype has a typed contents field (every one but FP16)."""
    return datatype in FIELD


def array_from_contents(
    name: str, datatype: str, shape: tuple[int, ...], count: int, contents: pb.InferTensorContents
) -> np.ndarray:
    """The array held in `contents`, checked against the shape and the datatype's range."""
    field = FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(
            f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"input {name!r}: {len(values)} values in {field}, but shape {list(shape)} "
            f"needs {count}"
        )
    _only_field(name, contents, field)
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    array = np.array(values, dtype=_carrier(field))
    if datatype in _NARROW and count:
        _check_range(name, datatype, array)
    return array.astype(numpy_dtype(datatype), copy=False).reshape(shape)


def fill_contents(tensor: Tensor, contents: pb.InferTensorContents) -> None:
    """Write a tensor's elements into the typed field of its datatype."""
    field = FIELD[tensor.datatype]
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        getattr(contents, field).extend(_as_bytes(x) for x in flat.tolist())
        return
    getattr(contents, field).extend(flat.astype(numpy_dtype(tensor.datatype), copy=False).tolist())


def _only_field(name: str, contents: pb.InferTensorContents, field: str) -> None:
    other = next((f.name for f, _ in contents.ListFields() if f.name != field), None)
    if other is not None:
        raise InvalidArgument(f"input {name!r}: has values in {other}; expected only {field}")


def _carrier(field: str) -> np.dtype[Any]:
    return np.dtype(
        {
            "bool_contents": np.bool_,
            "int_contents": np.int32,
            "int64_contents": np.int64,
            "uint_contents": np.uint32,
            "uint64_contents": np.uint64,
            "fp32_contents": np.float32,
            "fp64_contents": np.float64,
        }[field]
    )


def _check_range(name: str, datatype: str, array: np.ndarray) -> None:
    info = np.iinfo(numpy_dtype(datatype))
    if int(array.min()) < info.min or int(array.max()) > info.max:
        raise InvalidArgument(f"input {name!r}: a value is out of range for {datatype}")


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
