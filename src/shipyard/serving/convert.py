"""Core tensors → a model version's input, and its outputs → core tensors.

A `ConversionPlan` is built once per loaded version from its signature, so the request path
only does what the request needs. The common case, one numeric tensor whose dtype and
trailing shape already match the signature, is passed to the model as is (no pandas, no copy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import Internal, InvalidArgument, ShipyardError
from shipyard.core.signatures import Prepared, Signature, datatype_of, numpy_dtype
from shipyard.core.tensors import RequestedOutput, Tensor
from shipyard.runtimes.base import Outputs
from shipyard.serving.merge import rows_of

Prepare = Callable[[object], Prepared]


@lru_cache(maxsize=64)
def _datatype(dtype: np.dtype[Any]) -> str:
    return datatype_of(dtype)


def text(name: str, array: np.ndarray) -> np.ndarray:
    """A BYTES tensor's values as `str` (models compare strings, not bytes)."""
    if array.dtype != object:
        return array
    flat = array.reshape(-1)
    try:
        values = [v.decode("utf-8") if isinstance(v, bytes | bytearray) else v for v in flat]
    except UnicodeDecodeError:
        raise InvalidArgument(f"input {name!r}: BYTES values must be UTF-8 text") from None
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(array.shape)


def to_tensor(name: str, array: np.ndarray) -> Tensor:
    """One output as a tensor: numbers keep their dtype, strings become UTF-8 BYTES."""
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if array.dtype.kind in "OUS":
        if array.dtype.kind == "U":
            data = np.char.encode(array, "utf-8").astype(object)
        else:
            data = np.empty(array.shape, dtype=object)
            data.reshape(-1)[:] = [_as_bytes(v) for v in array.reshape(-1)]
        return Tensor(name, "BYTES", tuple(array.shape), data)
    try:
        datatype = _datatype(array.dtype)
    except ShipyardError:
        raise Internal(f"output {name!r} has an unsupported type {array.dtype}") from None
    return Tensor(name, datatype, tuple(array.shape), array)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


class ConversionPlan:
    """How requests for one model version become its input, and its outputs tensors."""

    def __init__(
        self, signature: Signature | None, prepare: Prepare, outputs: Sequence[str] = ()
    ) -> None:
        self.signature = signature
        self._prepare = prepare
        self.outputs = tuple(outputs) or (
            tuple(s.name for s in signature.outputs) if signature else ()
        )
        self._fast: tuple[np.dtype[Any], int, tuple[int, ...]] | None = None
        if signature is not None and not signature.columnar and len(signature.inputs) == 1:
            spec = signature.inputs[0]
            trailing = spec.shape[1:]
            if spec.numeric and all(d >= 0 for d in trailing):
                self._fast = (numpy_dtype(spec.datatype), len(spec.shape), trailing)

    def inputs(self, tensors: Sequence[Tensor]) -> tuple[Prepared, int]:
        """The prepared model input for `tensors` and its number of rows."""
        if not tensors:
            raise InvalidArgument("the request has no inputs")
        if len({t.name for t in tensors}) != len(tensors):
            raise InvalidArgument("each input name may appear only once")
        fast = self._fast
        if fast is not None and len(tensors) == 1:
            data = tensors[0].data
            if data.dtype == fast[0] and data.ndim == fast[1] and data.shape[1:] == fast[2]:
                if len(data) == 0:
                    raise InvalidArgument("the input has no rows")
                return data, len(data)
        return self.prepare(self._data(tensors))

    def prepare(self, data: object) -> tuple[Prepared, int]:
        """Check table- or array-shaped `data` against the signature (MLflow, KServe v1)."""
        try:
            prepared = self._prepare(data)
        except (ValueError, TypeError) as exc:  # pandas/numpy refusing the shape of `data`
            raise InvalidArgument(f"the input does not fit this model: {exc}") from None
        return prepared, rows_of(prepared)

    def check_outputs(self, requested: Sequence[RequestedOutput]) -> None:
        """Refuse unknown requested outputs before the model runs (when they are known)."""
        if requested and self.outputs:
            self._unknown([r.name for r in requested], self.outputs)

    def encode(self, outputs: Outputs, requested: Sequence[RequestedOutput]) -> tuple[Tensor, ...]:
        if not requested:
            return tuple(to_tensor(name, array) for name, array in outputs.items())
        names = [r.name for r in requested]
        self._unknown(names, tuple(outputs))
        return tuple(to_tensor(name, outputs[name]) for name in names)

    @staticmethod
    def _unknown(names: Sequence[str], available: Sequence[str]) -> None:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise InvalidArgument(
                f"unknown output {unknown[0]!r}; this model gives: {', '.join(available)}",
                details={"unknown": unknown, "available": list(available)},
            )

    # -- tensors → data for Signature.prepare ------------------------------------------------

    def _data(self, tensors: Sequence[Tensor]) -> object:
        signature = self.signature
        if signature is None:
            if len(tensors) == 1:
                return text(tensors[0].name, tensors[0].data)
            return {t.name: text(t.name, t.data) for t in tensors}
        names = [s.name for s in signature.inputs]
        if signature.columnar:
            return self._table(tensors, names)
        if len(names) == 1:
            if len(tensors) != 1:
                raise InvalidArgument(
                    f"this model takes one input ({names[0]!r}); got {len(tensors)}"
                )
            return text(tensors[0].name, tensors[0].data)
        _known(tensors, names, "input")
        return {t.name: text(t.name, t.data) for t in tensors}

    @staticmethod
    def _table(tensors: Sequence[Tensor], names: list[str]) -> object:
        """One tensor per column ([n] or [n, 1]), or one [n, k] tensor mapped by position."""
        if len(tensors) == 1 and tensors[0].name not in names:
            only = tensors[0]
            if only.data.ndim == 2 and only.shape[1] == len(names):
                return text(only.name, only.data)
        _known(tensors, names, "column")
        columns: dict[str, np.ndarray] = {}
        for tensor in tensors:
            data = tensor.data
            if data.ndim == 2 and data.shape[1] == 1:
                data = data.reshape(-1)
            if data.ndim != 1:
                raise InvalidArgument(
                    f"column {tensor.name!r} must have shape [n] or [n, 1]; "
                    f"got {list(tensor.shape)}"
                )
            columns[tensor.name] = text(tensor.name, data)
        if len({len(c) for c in columns.values()}) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in columns.items())
            raise InvalidArgument(f"columns must have the same number of rows; got {sizes}")
        return pd.DataFrame(columns)


def _known(tensors: Sequence[Tensor], names: Sequence[str], what: str) -> None:
    unknown = [t.name for t in tensors if t.name not in names]
    if unknown:
        raise InvalidArgument(
            f"unknown {what} {unknown[0]!r}; this model takes: {', '.join(names)}",
            details={"unknown": unknown, "expected": list(names)},
        )
