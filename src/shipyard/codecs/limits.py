"""Bounds every decoder enforces, and the bounded JSON loader they all go through.

One choke point per hazard (reference/security.md): body size, JSON nesting depth, element
count (checked from the declared shape before anything is allocated), tensor count and name
length. orjson itself stops at depth 1024; our limit is lower and is checked on the raw bytes
before parsing, so a deep document costs a few C-level byte scans and is never parsed.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from shipyard.core.errors import InvalidArgument, PayloadTooLarge

MIB = 1024 * 1024
MAX_NDIM = 32  # numpy allows 64; no model input needs more than a handful


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 64 * MIB  # also applies after decompression
    max_json_depth: int = 100
    max_elements: int = 16 * MIB  # per request, summed over tensors
    max_tensors: int = 64
    max_name_length: int = 200
    max_id_length: int = 256  # request ids are echoed and logged


DEFAULT_LIMITS: Limits = Limits()

_QUOTE, _COMMA, _OPEN, _CLOSE = (
    ord('"'),
    ord(","),
    ord("{"),
    ord("}"),
)  # '[' | 32 == '{' and ']' | 32 == '}'
_CHUNK = 1 << 20  # bounds the scratch arrays of the depth scan
_SMALL = 4096  # below this, bytes.count beats numpy's call overhead


def check_body_size(body: bytes | memoryview, limits: Limits) -> None:
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLarge(
            f"request body is {len(body)} bytes; the limit is {_size(limits.max_body_bytes)}"
        )


def load_json(body: bytes, limits: Limits, what: str = "request body") -> Any:
    """Parse a JSON document within the size and depth limits; every failure is InvalidArgument."""
    if not body.strip():
        raise InvalidArgument(f"{what} is empty; expected JSON")
    check_body_size(body, limits)
    openers, separators = _count_tokens(body)
    # Each JSON value becomes a Python object of 24-100 bytes: bound their number before
    # parsing. A request never needs more than ~2 values (element + row list) per element.
    if openers + separators > 2 * limits.max_elements + 4096:
        raise PayloadTooLarge(
            f"{what} holds more JSON values than {limits.max_elements} elements need"
        )
    if openers > limits.max_json_depth:  # else it cannot nest deeper than the limit
        check_depth(body, limits.max_json_depth)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def check_depth(body: bytes, max_depth: int) -> None:
    depth = json_depth(body)
    if depth > max_depth:
        raise InvalidArgument(f"JSON is nested {depth} levels deep; the limit is {max_depth}")


def _count_tokens(body: bytes) -> tuple[int, int]:
    """Opening brackets and commas (strings included: an upper bound), counted in C."""
    if len(body) < _SMALL:
        return body.count(b"[") + body.count(b"{"), body.count(b",")
    data = np.frombuffer(body, dtype=np.uint8)
    openers = separators = 0
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        openers += int(np.count_nonzero((chunk | 32) == _OPEN))
        separators += int(np.count_nonzero(chunk == _COMMA))
    return openers, separators


def json_depth(body: bytes) -> int:
    """Maximum bracket nesting of a JSON text, ignoring brackets inside strings.

    Exact for valid JSON; for invalid JSON it is some number and the parser rejects the text.
    Vectorised in chunks, so the scratch memory stays a few MiB whatever the body size.
    """
    if b"\\" in body:
        # Drop escaped backslashes, then escaped quotes: every '"' left delimits a string.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = np.frombuffer(body, dtype=np.uint8)
    level = deepest = quotes = 0
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        folded = chunk | 32
        where = np.flatnonzero((folded == _OPEN) | (folded == _CLOSE))
        quote_at = np.flatnonzero(chunk == _QUOTE)
        # A bracket is inside a string when an odd number of quotes precede it.
        outside = (np.searchsorted(quote_at, where) + quotes) % 2 == 0
        opens = (folded[where[outside]] == _OPEN).astype(np.int32)
        steps = 2 * opens - 1  # +1 for an opening bracket, -1 for a closing one
        quotes += len(quote_at)
        if len(steps):
            running = np.cumsum(steps) + level
            deepest = max(deepest, int(running.max()))
            level = int(running[-1])
    return deepest


def parse_shape(name: str, raw: object, limits: Limits, budget: int) -> tuple[tuple[int, ...], int]:
    """A declared shape and its element count, refused before allocation if over `budget`."""
    if type(raw) is list and len(raw) > MAX_NDIM:
        raise InvalidArgument(f"tensor {name!r}: shape has {len(raw)} dimensions; max {MAX_NDIM}")
    if type(raw) is not list or any(type(d) is not int or d < 0 for d in raw):
        raise InvalidArgument(
            f"tensor {name!r}: shape must be a list of non-negative integers; got {show(raw)}"
        )
    # Bounding each dimension first keeps the product a small integer even with a 0 elsewhere.
    if any(d > limits.max_elements for d in raw) or (count := math.prod(raw)) > budget:
        raise PayloadTooLarge(
            f"tensor {name!r}: shape {raw} is larger than allowed "
            f"({limits.max_elements} elements per request)"
        )
    return tuple(raw), count


def check_name(raw: object, where: str, limits: Limits) -> str:
    if type(raw) is not str or not raw:
        raise InvalidArgument(f"{where}: 'name' must be a non-empty string; got {show(raw)}")
    if len(raw) > limits.max_name_length:
        raise InvalidArgument(
            f"{where}: name is {len(raw)} characters long; the limit is {limits.max_name_length}"
        )
    return raw


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"


def show(value: object) -> str:
    """A short rendering of a caller's value for an error message, bounded for huge values."""
    if value is None or type(value) is bool:
        return {None: "null", True: "true", False: "false"}[value]
    return _REPR.repr(value)


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()  # keyword arguments need Python 3.12
    r.maxlevel, r.maxlist, r.maxdict = 2, 6, 4
    r.maxstring = r.maxlong = r.maxother = 40
    return r


_REPR = _bounded_repr()
