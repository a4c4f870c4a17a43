"""The OIP binary tensor data extension, and the raw tensor layout gRPC uses too.

A binary request is a JSON header (its length is in `Inference-Header-Content-Length`)
followed by raw tensors back to back, in input order. Raw layout: little-endian, row-major;
BOOL one byte per element; BYTES elements each a 4-byte little-endian length then the bytes.
Fixed-size tensors are decoded with `np.frombuffer`: read-only views into the request body,
no copy (they may be unaligned, which numpy handles).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.codecs.limits import DEFAULT_LIMITS, Limits, parse_shape
from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import DATATYPES, numpy_dtype
from shipyard.core.tensors import EMPTY, Tensor

HEADER = "Inference-Header-Content-Length"
CONTENT_TYPE = "application/octet-stream"
_U32 = struct.Struct("<I")
_WIRE: dict[str, np.dtype[Any]] = {
    t: numpy_dtype(t).newbyteorder("<") for t in DATATYPES if t != "BYTES"
}
_MAX_HEADER_DIGITS = 19  # int() of a longer digit string is slow and no body is that big


def parse_header_length(value: str | None) -> int | None:
    """The value of `Inference-Header-Content-Length` as an int (None when absent)."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > _MAX_HEADER_DIGITS:
        raise InvalidArgument(f"{HEADER} must be a non-negative integer; got {value[:40]!r}")
    return int(text)


def split_body(body: bytes, header_length: int) -> tuple[bytes, memoryview]:
    """The JSON header (copied: it is small) and a zero-copy view of the binary tail."""
    if header_length < 0 or header_length > len(body):
        raise InvalidArgument(
            f"{HEADER} is {header_length} but the body has only {len(body)} bytes"
        )
    return body[:header_length], memoryview(body)[header_length:]


class BinaryTail:
    """Hands out the raw tensors of the tail in input order and checks nothing is left over."""

    __slots__ = ("_offset", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._offset = 0

    def take(self, name: str, size: object) -> memoryview:
        if type(size) is not int or size < 0:
            raise InvalidArgument(
                f"input {name!r}: binary_data_size must be a non-negative integer"
            )
        left = len(self._view) - self._offset
        if size > left:
            raise InvalidArgument(
                f"input {name!r}: binary_data_size {size} runs past the end of the body "
                f"({left} bytes left)"
            )
        start, self._offset = self._offset, self._offset + size
        return self._view[start : self._offset]

    def finish(self) -> None:
        extra = len(self._view) - self._offset
        if extra:
            raise InvalidArgument(
                f"the binary part of the body has {extra} bytes more than the inputs' "
                "binary_data_size add up to"
            )


def tensor_from_raw(
    name: str,
    datatype: str,
    shape: Sequence[int],
    raw: bytes | memoryview,
    *,
    limits: Limits = DEFAULT_LIMITS,
    parameters: Mapping[str, Any] = EMPTY,
) -> Tensor:
    """A tensor from its raw bytes, checked against the shape; fixed types are zero-copy."""
    if datatype not in DATATYPES:
        numpy_dtype(datatype)  # raises the "unknown datatype" error
    dims, count = parse_shape(name, list(shape), limits, limits.max_elements)
    return Tensor(
        name, datatype, dims, array_from_raw(name, datatype, dims, count, raw), parameters
    )


def array_from_raw(
    name: str, datatype: str, shape: tuple[int, ...], count: int, raw: bytes | memoryview
) -> np.ndarray:
    if datatype == "BYTES":
        return _bytes_elements(name, memoryview(raw), count).reshape(shape)
    dtype = _WIRE[datatype]
    need = count * dtype.itemsize
    if len(raw) != need:
        raise InvalidArgument(
            f"tensor {name!r}: {len(raw)} bytes of binary data, but shape {list(shape)} "
            f"of {datatype} needs {need}"
        )
    if datatype == "BOOL" and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise InvalidArgument(f"tensor {name!r}: BOOL bytes must be 0 or 1")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _bytes_elements(name: str, raw: memoryview, count: int) -> np.ndarray:
    end = len(raw)
    if count * _U32.size > end:  # every element needs its 4-byte prefix: refuse before allocating
        raise InvalidArgument(f"tensor {name!r}: {end} bytes cannot hold {count} BYTES elements")
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + _U32.size > end:
            raise InvalidArgument(f"tensor {name!r}: BYTES element {i} is missing its length")
        (size,) = _U32.unpack_from(raw, offset)
        offset += _U32.size
        if size > end - offset:
            raise InvalidArgument(
                f"tensor {name!r}: BYTES element {i} has length {size}, past the end of the data"
            )
        out[i] = raw[offset : offset + size].tobytes()
        offset += size
    if offset != end:
        raise InvalidArgument(
            f"tensor {name!r}: {end - offset} bytes left after {count} BYTES elements"
        )
    return out


def tensor_to_raw(t: Tensor) -> bytes:
    """The raw bytes of a tensor (little-endian, row-major; BYTES length-prefixed)."""
    return bytes(raw_view(t))


def raw_view(t: Tensor) -> bytes | memoryview:
    """Like `tensor_to_raw`, without a copy when the array is already in wire layout."""
    if t.datatype == "BYTES":
        return b"".join(_prefixed(t.name, x) for x in t.data.ravel().tolist())
    array = np.ascontiguousarray(t.data, dtype=_WIRE[t.datatype])
    return array.reshape(-1).view(np.uint8).data


def _prefixed(name: str, value: object) -> bytes:
    try:
        data = value if isinstance(value, bytes) else str(value).encode()
    except UnicodeEncodeError:
        raise InvalidArgument(f"tensor {name!r}: a BYTES element is not valid text") from None
    if len(data) > 0xFFFFFFFF:
        raise InvalidArgument(f"tensor {name!r}: a BYTES element is larger than 4 GiB")
    return _U32.pack(len(data)) + data
