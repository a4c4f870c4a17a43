"""Model signatures: names, datatypes and shapes of inputs and outputs.

A signature is inferred from the sample given at registration and enforced on every predict,
so a caller sending the wrong thing gets a message naming the input and what was expected,
instead of a framework traceback. Datatypes use the Open Inference Protocol names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument

Prepared = pd.DataFrame | np.ndarray | dict[str, np.ndarray]

_TO_DATATYPE: dict[str, str] = {
    "b": "BOOL",
    "u1": "UINT8",
    "u2": "UINT16",
    "u4": "UINT32",
    "u8": "UINT64",
    "i1": "INT8",
    "i2": "INT16",
    "i4": "INT32",
    "i8": "INT64",
    "f2": "FP16",
    "f4": "FP32",
    "f8": "FP64",
}
_TO_NUMPY: dict[str, np.dtype[Any]] = {
    v: np.dtype(k if k != "b" else "?") for k, v in _TO_DATATYPE.items()
}
DATATYPES: frozenset[str] = frozenset([*_TO_NUMPY, "BYTES"])
INPUT_NAME = "input"


def datatype_of(dtype: Any) -> str:
    """The OIP datatype of a numpy/pandas dtype; strings, objects and categories are BYTES."""
    np_dtype = np.dtype(dtype) if not isinstance(dtype, pd.api.extensions.ExtensionDtype) else None
    if np_dtype is None or np_dtype.kind in "OSUV":
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "biuf":
            return datatype_of(np.dtype(dtype.numpy_dtype))  # type: ignore[attr-defined]
        return "BYTES"
    key = "b" if np_dtype.kind == "b" else f"{np_dtype.kind}{np_dtype.itemsize}"
    if key not in _TO_DATATYPE:
        raise InvalidArgument(f"unsupported data type {np_dtype}")
    return _TO_DATATYPE[key]


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype that carries an OIP datatype (BYTES travels as object)."""
    if datatype == "BYTES":
        return np.dtype(object)
    try:
        return _TO_NUMPY[datatype]
    except KeyError:
        known = ", ".join(sorted(DATATYPES))
        raise InvalidArgument(f"unknown datatype {datatype!r}; known: {known}") from None


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input or output. Shape uses -1 for the variable (batch) dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))

    @property
    def numeric(self) -> bool:
        return self.datatype != "BYTES"


@dataclass(frozen=True, slots=True)
class Signature:
    """Inputs and outputs of a model.

    `columnar` models take a table: each input is one column (shape [-1]). Otherwise each
    input is a tensor whose first dimension is the batch.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    columnar: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "columnar": self.columnar,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s) for s in data.get("outputs", ())),
            columnar=bool(data.get("columnar", False)),
        )

    def with_outputs(self, outputs: Mapping[str, np.ndarray]) -> Signature:
        specs = tuple(
            TensorSpec(name, datatype_of(arr.dtype), (-1, *arr.shape[1:]))
            for name, arr in outputs.items()
        )
        return Signature(self.inputs, specs, self.columnar)

    def prepare(self, data: object) -> Prepared:
        """Check `data` against the inputs and convert it to what the model expects."""
        if self.columnar:
            return _prepare_table(self.inputs, data)
        if len(self.inputs) == 1 and not isinstance(data, Mapping):
            return _prepare_tensor(self.inputs[0], data)
        if not isinstance(data, Mapping):
            names = ", ".join(s.name for s in self.inputs)
            raise InvalidArgument(f"this model takes named inputs ({names}); give a dict of arrays")
        missing = [s.name for s in self.inputs if s.name not in data]
        if missing:
            raise InvalidArgument(f"missing inputs: {', '.join(missing)}")
        return {s.name: _prepare_tensor(s, data[s.name]) for s in self.inputs}


def infer_signature(sample: object) -> Signature:
    """Infer the input side of a signature from a sample (DataFrame, array, list or dict)."""
    if isinstance(sample, pd.DataFrame) and _string_columns(sample):
        _require_rows(len(sample))
        specs = tuple(TensorSpec(str(c), datatype_of(t), (-1,)) for c, t in sample.dtypes.items())
        return Signature(specs, columnar=True)
    if isinstance(sample, Mapping):
        specs = tuple(_tensor_spec(str(k), _as_array(v)) for k, v in sample.items())
        return Signature(specs)
    return Signature((_tensor_spec(INPUT_NAME, _as_array(sample)),))


def _string_columns(frame: pd.DataFrame) -> bool:
    return all(isinstance(c, str) for c in frame.columns)


def _as_array(value: object) -> np.ndarray:
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.to_numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return np.asarray(value)
    raise InvalidArgument(
        f"cannot use a {type(value).__name__} as model input; give a pandas DataFrame, "
        "a numpy array, a list of rows or a dict of arrays"
    )


def _tensor_spec(name: str, array: np.ndarray) -> TensorSpec:
    if array.ndim == 0:
        raise InvalidArgument(f"input {name!r} is a scalar; give at least one row")
    _require_rows(array.shape[0])
    return TensorSpec(name, datatype_of(array.dtype), (-1, *array.shape[1:]))


def _require_rows(rows: int) -> None:
    if rows == 0:
        raise InvalidArgument("the input has no rows")


def _prepare_tensor(spec: TensorSpec, value: object) -> np.ndarray:
    array = _as_array(value)
    if array.ndim == len(spec.shape) - 1 and array.shape == tuple(spec.shape[1:]):
        array = array.reshape(1, *array.shape)  # one row given without its batch dimension
    got = [int(d) for d in array.shape]
    fits = len(got) == len(spec.shape) and all(
        want in (-1, have) for want, have in zip(spec.shape[1:], got[1:], strict=True)
    )
    if not fits:
        raise InvalidArgument(
            f"input {spec.name!r} expects shape {list(spec.shape)}; got {got}",
            details={"input": spec.name, "expected": list(spec.shape), "got": got},
        )
    _require_rows(got[0])
    return _cast(spec, array)


def _cast(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    want = numpy_dtype(spec.datatype)
    if array.dtype == want:
        return array
    if not spec.numeric:
        return array.astype(object)
    if array.dtype.kind in "biuf":
        if want.kind in "iu" and array.dtype.kind == "f" and not _integral(array):
            raise InvalidArgument(
                f"input {spec.name!r} expects {spec.datatype} (integers); got fractional values"
            )
        return array.astype(want)
    numeric = pd.to_numeric(pd.Series(array.reshape(-1)), errors="coerce")
    bad = numeric.isna().to_numpy() & ~pd.isna(pd.Series(array.reshape(-1))).to_numpy()
    if bad.any():
        example = array.reshape(-1)[int(np.argmax(bad))]
        raise InvalidArgument(
            f"input {spec.name!r} expects {spec.datatype} but holds non-numeric values "
            f"such as {str(example)[:40]!r}"
        )
    return _cast(spec, numeric.to_numpy(dtype=np.float64).reshape(array.shape))


def _integral(array: np.ndarray) -> bool:
    finite = np.isfinite(array)
    return bool(finite.all() and (array == np.round(array)).all())


def _prepare_table(specs: Sequence[TensorSpec], value: object) -> pd.DataFrame:
    frame = _as_frame(specs, value)
    names = [s.name for s in specs]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InvalidArgument(
            f"missing input columns: {', '.join(missing)}",
            details={"missing": missing, "expected": names},
        )
    _require_rows(len(frame))
    if list(frame.columns) != names:
        frame = frame[names]
    # Cast only the columns whose dtype differs: the common case touches no data at all.
    casts = {
        s.name: _cast_column(s, frame[s.name])
        for s, dtype in zip(specs, frame.dtypes, strict=True)
        if s.numeric and dtype != numpy_dtype(s.datatype)
    }
    return frame.assign(**casts) if casts else frame


def _as_frame(specs: Sequence[TensorSpec], value: object) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, Mapping):
        return pd.DataFrame({str(k): _as_array(v).reshape(-1) for k, v in value.items()})
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return pd.DataFrame.from_records(value)
    array = _as_array(value)
    if array.ndim == 1 and len(array) == len(specs):
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != len(specs):
        raise InvalidArgument(
            f"this model takes a table with columns {[s.name for s in specs]}; "
            f"got an array of shape {list(array.shape)}"
        )
    return pd.DataFrame(array, columns=[s.name for s in specs])


def _cast_column(spec: TensorSpec, column: pd.Series) -> pd.Series:
    values = column.to_numpy()
    if values.ndim != 1:
        raise InvalidArgument(f"column {spec.name!r} must hold one value per row")
    if not spec.numeric:
        return column
    try:
        cast = _cast(spec, values)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message.replace("input", "column", 1)) from None
    return pd.Series(cast, index=column.index, name=spec.name)
