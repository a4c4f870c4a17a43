"""Shared cases for the codec tests: sample values per datatype, request bodies as clients build them."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from shipyard.codecs.oip_binary import tensor_to_raw
from shipyard.core.signatures import numpy_dtype
from shipyard.core.tensors import Tensor

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 200, 255],
    "UINT16": [0, 1, 40000, 65535],
    "UINT32": [0, 1, 7, 2**32 - 1],
    "UINT64": [0, 1, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-(2**15), -1, 0, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [0.5, -2.0, 65504.0, 0.0999755859375],
    "FP32": [1.5, -3.4e38, 0.1, 0.0],
    "FP64": [0.1, 1e308, -5e-324, 2.0],
    "BYTES": ["a", "é€", "", "x" * 10],
}


def json_body(**doc: Any) -> bytes:
    return orjson.dumps(doc)


def one_input(datatype: str, shape: list[Any], data: Any, **extra: Any) -> bytes:
    tensor = {"name": "x", "datatype": datatype, "shape": shape, "data": data, **extra}
    return json_body(inputs=[tensor])


def make_binary_request(tensors: list[Tensor], **doc: Any) -> tuple[bytes, int]:
    """A body with every tensor sent as binary data, and its JSON header length."""
    raws = [tensor_to_raw(t) for t in tensors]
    inputs = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.shape),
            "parameters": {"binary_data_size": len(raw)},
        }
        for t, raw in zip(tensors, raws, strict=True)
    ]
    header = orjson.dumps({"inputs": inputs, **doc})
    return header + b"".join(raws), len(header)


def sample_tensor(datatype: str, name: str = "x") -> Tensor:
    values = SAMPLES[datatype]
    if datatype == "BYTES":
        data = np.array([v.encode() for v in values], dtype=object).reshape(2, 2)
    else:
        data = np.array(values, dtype=numpy_dtype(datatype)).reshape(2, 2)
    return Tensor(name, datatype, (2, 2), data)
