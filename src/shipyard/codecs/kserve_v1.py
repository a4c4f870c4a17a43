"""KServe v1 prediction protocol: `{"instances": [...]}` in, `{"predictions": [...]}` out.

As KServe does, `{"inputs": [...]}` is accepted in place of `instances`. Rows of values
become one array (rectangular, strictly typed); rows of objects stay a list of dicts for
models that take named features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.codecs.jsonarrays import dumps, infer_array, to_jsonable
from shipyard.codecs.limits import DEFAULT_LIMITS, Limits, load_json
from shipyard.core.errors import InvalidArgument

_KEYS = ("instances", "inputs")


def decode_predict(
    body: bytes, limits: Limits = DEFAULT_LIMITS
) -> np.ndarray | list[dict[str, Any]]:
    doc = load_json(body, limits, "prediction request")
    if type(doc) is not dict:
        raise InvalidArgument('prediction request must be a JSON object {"instances": [...]}')
    present = [k for k in _KEYS if k in doc]
    if len(present) != 1:
        raise InvalidArgument('prediction request needs exactly one of "instances" or "inputs"')
    key = present[0]
    rows = doc[key]
    if type(rows) is not list or not rows:
        raise InvalidArgument(f"{key!r} must be a non-empty list")
    if type(rows[0]) is dict:
        if not all(type(r) is dict for r in rows):
            raise InvalidArgument(f"{key!r}: mix of objects and other values")
        if len(rows) > limits.max_elements:
            raise InvalidArgument(f"{key!r}: {len(rows)} rows; the limit is {limits.max_elements}")
        return rows
    return infer_array(key, rows, limits.max_elements)


def encode_predict(values: np.ndarray | Sequence[Any] | Mapping[str, Any]) -> bytes:
    """`{"predictions": ...}`; arrays are written as nested lists by orjson directly."""
    if isinstance(values, np.ndarray):
        return dumps({"predictions": to_jsonable(values)})
    return dumps({"predictions": values})
