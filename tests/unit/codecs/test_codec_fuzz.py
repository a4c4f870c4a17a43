"""Generative tests: decoders raise only our own errors; valid tensors round-trip exactly."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import numpy as np
import orjson
import pytest
from codec_cases import make_binary_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shipyard.codecs import kserve_v1, mlflow, oip
from shipyard.codecs.compression import decompress
from shipyard.codecs.limits import Limits
from shipyard.codecs.oip_binary import tensor_from_raw, tensor_to_raw
from shipyard.core.errors import ShipyardError
from shipyard.core.signatures import numpy_dtype
from shipyard.core.tensors import InferResult, Tensor

SMALL = Limits(max_elements=10_000, max_body_bytes=1 << 20)
NUMERIC = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]
WIDTHS: dict[int, Literal[16, 32, 64]] = {2: 16, 4: 32, 8: 64}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_our_errors(call: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(ShipyardError):
        call(*args, **kwargs)


# Arbitrary JSON-ish values that look a bit like requests, so fuzzing gets past the first check.
scalars = (
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=5)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "shape",
                    "datatype",
                    "data",
                    "parameters",
                    "inputs",
                    "outputs",
                    "id",
                    "binary_data_size",
                    "binary_data",
                    "binary_data_output",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)
tensor_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y", ""]) | scalars,
        "shape": st.lists(st.integers(-1, 4), max_size=3) | json_like,
        "datatype": st.sampled_from([*NUMERIC, "BYTES", "fp32"]) | scalars,
        "data": json_like,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-1, 64) | scalars}
        ),
    },
)
request_like = st.fixed_dictionaries(
    {"inputs": st.lists(tensor_like, max_size=3) | json_like},
    optional={"outputs": json_like, "parameters": json_like, "id": scalars},
)


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers beyond 64 bits: leave them out
        return b"{}"


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_our_errors(body: bytes) -> None:
    only_our_errors(oip.decode_infer, body, "m", limits=SMALL)
    only_our_errors(oip.decode_infer, body, "m", header_length=len(body) // 2, limits=SMALL)
    only_our_errors(kserve_v1.decode_predict, body, SMALL)
    for content_type in ("application/json", "text/csv", None):
        only_our_errors(mlflow.decode_invocations, body, content_type, SMALL)
    for encoding in ("gzip", "deflate"):
        only_our_errors(decompress, body, encoding, 1 << 16)


@FUZZ
@given(request_like, st.binary(max_size=64), st.booleans())
def test_request_shaped_json_raises_only_our_errors(doc: Any, tail: bytes, binary: bool) -> None:
    header = dumps(doc)
    body, header_length = (header + tail, len(header)) if binary else (header, None)
    only_our_errors(oip.decode_infer, body, "m", header_length=header_length, limits=SMALL)


@st.composite
def consistent_tensors(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A well-formed tensor header with random values: reaches the element conversion."""
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    count = int(np.prod(shape))
    tensor: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": shape}
    if draw(st.booleans()):
        tensor["data"] = draw(st.lists(scalars, min_size=count, max_size=count))
        return tensor, b""
    raw = draw(st.binary(max_size=4 * count + 8))
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw


@FUZZ
@given(consistent_tensors())
def test_random_values_in_well_formed_tensors_raise_only_our_errors(case: Any) -> None:
    tensor, raw = case
    header = dumps({"inputs": [tensor]})
    only_our_errors(oip.decode_infer, header + raw, "m", header_length=len(header), limits=SMALL)


@FUZZ
@given(json_like)
def test_mlflow_and_kserve_shaped_json_raise_only_our_errors(value: Any) -> None:
    for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
        body = dumps({key: value})
        only_our_errors(mlflow.decode_invocations, body, "application/json", SMALL)
        only_our_errors(kserve_v1.decode_predict, body, SMALL)


@FUZZ
@given(
    st.sampled_from([*NUMERIC, "BYTES"]),
    st.lists(st.integers(0, 3), max_size=3),
    st.binary(max_size=64),
)
def test_raw_decoding_raises_only_our_errors(datatype: str, shape: list[int], raw: bytes) -> None:
    only_our_errors(tensor_from_raw, "x", datatype, shape, raw)


@st.composite
def tensors(draw: st.DrawFn, finite: bool) -> Tensor:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if datatype == "BYTES":
        # JSON carries text; the binary layout carries any bytes.
        element = st.text(max_size=6).map(str.encode) if finite else st.binary(max_size=6)
        values = draw(st.lists(element, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        data = np.empty(len(values), dtype=object)
        data[:] = values
        return Tensor(
            draw(st.sampled_from(["x", "é", "out_0"])), datatype, shape, data.reshape(shape)
        )
    dtype = numpy_dtype(datatype)
    elements = (
        st.floats(allow_nan=False, allow_infinity=False, width=WIDTHS[dtype.itemsize])
        if finite and dtype.kind == "f"
        else None
    )
    data = draw(hnp.arrays(dtype, shape, elements=elements))
    return Tensor("x", datatype, shape, data)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def json_request(t: Tensor) -> bytes:
    flat = t.data.ravel().tolist()
    data = [v.decode() for v in flat] if t.datatype == "BYTES" else flat
    return orjson.dumps(
        {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": data}]}
    )


@FUZZ
@given(tensors(finite=True))
def test_json_round_trip_is_exact(t: Tensor) -> None:
    request = oip.decode_infer(json_request(t), "m")
    assert same(request.inputs[0].data, t.data)
    body, header_length = oip.encode_infer(InferResult("m", "1", (t,)))
    assert header_length is None
    (output,) = orjson.loads(body)["outputs"]
    decoded = oip.decode_infer(orjson.dumps({"inputs": [output]}), "m").inputs[0]
    assert same(decoded.data, t.data)


@FUZZ
@given(st.lists(tensors(finite=False), min_size=1, max_size=3))
def test_binary_round_trip_is_exact(ts: list[Tensor]) -> None:
    ts = [Tensor(f"t{i}", t.datatype, t.shape, t.data) for i, t in enumerate(ts)]
    body, header_length = make_binary_request(ts)
    request = oip.decode_infer(body, "m", header_length=header_length)
    for got, want in zip(request.inputs, ts, strict=True):
        assert same(got.data, want.data)
    response, response_header = oip.encode_infer(InferResult("m", "1", request.inputs), binary=True)
    assert response_header is not None
    offset = response_header
    for o, want in zip(orjson.loads(response[:response_header])["outputs"], ts, strict=True):
        size = o["parameters"]["binary_data_size"]
        got = tensor_from_raw(
            o["name"], o["datatype"], o["shape"], response[offset : offset + size]
        )
        offset += size
        assert same(got.data, want.data)
        assert tensor_to_raw(got) == tensor_to_raw(want)
    assert offset == len(response)


@pytest.mark.parametrize("seed", range(3))
def test_nested_and_flat_json_agree(seed: int) -> None:
    data = np.random.default_rng(seed).random((3, 4, 2))
    flat = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [3, 4, 2], "data": data.ravel().tolist()}
            ]
        }
    )
    nested = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3, 4, 2], "data": data.tolist()}]}
    )
    a = oip.decode_infer(flat, "m").inputs[0].data
    b = oip.decode_infer(nested, "m").inputs[0].data
    assert same(a, data) and same(b, data)
