"""JSON lists <-> numpy arrays, strictly typed, for every JSON codec.

Parsed JSON arrives as Python lists. We flatten nested lists level by level (checking that
they are rectangular), check the element types with one C-level pass (`set(map(type, ...))`),
and let numpy convert the flat list in one call. numpy alone is not strict enough: it turns
"1.5" into 1.5, True into 1.0, None into nan, and strings into fixed-width '<U' arrays whose
size is set by the longest string (a memory amplifier), so none of those reach it unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from itertools import chain
from typing import Any

import numpy as np
import orjson

from shipyard.codecs.limits import MAX_NDIM, show
from shipyard.core.errors import Internal, InvalidArgument
from shipyard.core.signatures import numpy_dtype

_NUMBER = frozenset({int, float})
_NARROW_FLOATS = frozenset({"FP16", "FP32"})
_ALLOWED: dict[str, frozenset[type]] = {
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
    **{t: frozenset({int}) for t in ("INT8", "INT16", "INT32", "INT64")},
    **{t: frozenset({int}) for t in ("UINT8", "UINT16", "UINT32", "UINT64")},
    **{t: _NUMBER for t in ("FP16", "FP32", "FP64")},
}
_EXPECTED = {
    "BOOL": "booleans",
    "BYTES": "strings",
    **{t: "integers" for t in _ALLOWED if "INT" in t},
    **{t: "numbers" for t in ("FP16", "FP32", "FP64")},
}
_KIND = {
    bool: "a boolean",
    int: "an integer",
    float: "a fractional number",
    str: "a string",
    list: "a nested list (deeper than the shape)",
    dict: "an object",
    type(None): "null",
}


def flatten(name: str, data: object, shape: tuple[int, ...], count: int) -> list[Any]:
    """The row-major elements of `data`, given flat or nested exactly as `shape`."""
    if type(data) is not list:
        raise InvalidArgument(f"tensor {name!r}: 'data' must be a list; got {show(data)}")
    if len(data) == count and (count == 0 or type(data[0]) is not list):
        return data  # flat; nested leftovers are caught by the element type check
    if not shape or len(data) != shape[0]:
        raise _mismatch(name, shape, count)
    items: list[Any] = data
    for dim in shape[1:]:
        if not all(type(x) is list and len(x) == dim for x in items):
            raise _mismatch(name, shape, count)
        items = list(chain.from_iterable(items))
    return items


def _mismatch(name: str, shape: tuple[int, ...], count: int) -> InvalidArgument:
    return InvalidArgument(
        f"tensor {name!r}: data does not match shape {list(shape)}; give {count} values, "
        "either flat (row-major) or nested exactly as the shape"
    )


def to_array(name: str, datatype: str, items: list[Any]) -> np.ndarray:
    """A 1-D array of `datatype` from flat JSON values, refusing anything of the wrong type."""
    allowed = _ALLOWED.get(datatype)
    if allowed is None:
        numpy_dtype(datatype)  # raises the "unknown datatype" error
        raise Internal(f"no JSON rule for datatype {datatype}")
    if not allowed.issuperset(map(type, items)):
        bad = next(x for x in items if type(x) not in allowed)
        raise InvalidArgument(
            f"tensor {name!r}: {datatype} data must be {_EXPECTED[datatype]}; "
            f"found {_KIND.get(type(bad), type(bad).__name__)} {show(bad)}"
        )
    if datatype == "BYTES":
        return _object_array([s.encode() for s in items])
    dtype = numpy_dtype(datatype)
    try:
        if datatype in _NARROW_FLOATS:
            # Overflow in a float cast is only a warning by default: make it an error.
            with np.errstate(over="raise"):
                return np.array(items, dtype=dtype)
        return np.array(items, dtype=dtype)  # integers out of range raise OverflowError
    except (OverflowError, FloatingPointError):
        raise InvalidArgument(f"tensor {name!r}: a value is out of range for {datatype}") from None


def infer_array(name: str, data: object, max_elements: int) -> np.ndarray:
    """An array from nested JSON lists without a declared type (MLflow, KServe v1).

    Booleans, integers and numbers give bool, int64 and float64 (null becomes NaN among
    numbers); strings and mixed values give an object array.
    """
    shape, items = infer_shape(name, data, max_elements)
    kinds = set(map(type, items))
    if kinds & {list, dict}:
        raise InvalidArgument(
            f"{name}: values must be numbers, strings, booleans or null, in rectangular lists"
        )
    return _typed(kinds, items).reshape(shape)


def infer_shape(name: str, data: object, max_elements: int) -> tuple[tuple[int, ...], list[Any]]:
    """Shape of rectangular nested lists and their elements in row-major order."""
    if type(data) is not list:
        raise InvalidArgument(f"{name}: expected a list; got {show(data)}")
    shape = [len(data)]
    items: list[Any] = data
    while items and type(items[0]) is list and len(shape) < MAX_NDIM:
        width = len(items[0])
        if not all(type(x) is list and len(x) == width for x in items):
            raise InvalidArgument(f"{name}: nested lists are not rectangular")
        items = list(chain.from_iterable(items))
        shape.append(width)
    if len(items) > max_elements:
        raise InvalidArgument(f"{name}: {len(items)} values; the limit is {max_elements}")
    return tuple(shape), items


def _typed(kinds: set[type], items: list[Any]) -> np.ndarray:
    if not kinds:
        return np.array(items, dtype=np.float64)
    if kinds <= {bool}:
        return np.array(items, dtype=np.bool_)
    if kinds <= {int}:
        try:
            return np.array(items, dtype=np.int64)
        except OverflowError:
            return np.array(items, dtype=np.float64)
    if kinds <= {int, float, type(None)} and kinds & {int, float}:
        return np.array(items, dtype=np.float64)  # None -> nan
    return _object_array(items)


def _object_array(items: Sequence[object]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def to_jsonable(array: np.ndarray, datatype: str | None = None) -> Any:
    """What orjson (with OPT_SERIALIZE_NUMPY) can write for an array: the array or a list.

    orjson writes C-contiguous native numeric arrays directly (nested like the shape); for
    other arrays we build lists. BYTES become strings (tritonclient expects strings).
    """
    if datatype is not None and datatype != "BYTES":
        array = array.astype(numpy_dtype(datatype), copy=False)
    if array.dtype.kind in "biuf":
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return np.ascontiguousarray(array)
    return _strings(array.tolist())


def _strings(value: Any) -> Any:
    if type(value) is list:
        return [_strings(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise InvalidArgument(
                "an output holds bytes that are not UTF-8 text; request it as binary data"
            ) from None
    return value


def dumps(doc: object) -> bytes:
    """orjson with numpy arrays and scalars; anything else unexpected is an Internal error."""
    try:
        return orjson.dumps(doc, default=_fallback, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise Internal(f"cannot encode the response as JSON: {exc}") from None


def _fallback(value: object) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return to_jsonable(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, datetime | date):  # subclasses such as pandas.Timestamp
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
