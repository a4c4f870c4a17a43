"""OIP v2 JSON: round trips for every datatype, requested outputs, and every bad input."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest
from codec_cases import SAMPLES, json_body, one_input, sample_tensor

from shipyard.codecs import oip
from shipyard.codecs.limits import Limits
from shipyard.core.errors import InvalidArgument, PayloadTooLarge, ShipyardError
from shipyard.core.signatures import TensorSpec, numpy_dtype
from shipyard.core.tensors import InferRequest, InferResult, Tensor

DATATYPES = sorted(SAMPLES)


def decode(body: bytes, **kwargs: Any) -> InferRequest:
    return oip.decode_infer(body, "model", "1", **kwargs)


def echo(request: InferRequest) -> InferResult:
    return InferResult("model", "1", request.inputs, id=request.id)


def from_response(body: bytes) -> dict[str, np.ndarray]:
    """Read a JSON response back the way tritonclient does: flat data reshaped."""
    doc = orjson.loads(body)
    out = {}
    for o in doc["outputs"]:
        if o["datatype"] == "BYTES":
            values = np.array([s.encode() for s in o["data"]], dtype=object)
        else:
            values = np.array(o["data"], dtype=numpy_dtype(o["datatype"]))
        out[o["name"]] = values.reshape(o["shape"])
    return out


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("nested", [False, True])
def test_every_datatype_round_trips(datatype: str, nested: bool) -> None:
    values = SAMPLES[datatype]
    data = [values[:2], values[2:]] if nested else values
    request = decode(one_input(datatype, [2, 2], data))
    tensor = request.inputs[0]
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2, 2))
    expected = sample_tensor(datatype).data
    assert tensor.data.dtype == expected.dtype
    assert tensor.data.tolist() == expected.tolist()
    body, header_length = oip.encode_infer(echo(request))
    assert header_length is None
    assert from_response(body)["x"].tolist() == expected.tolist()


def test_request_fields_are_decoded() -> None:
    body = json_body(
        id="req-1",
        parameters={"priority": 2, "binary_data_output": False},
        inputs=[
            {"name": "a", "datatype": "FP32", "shape": [1, 2], "data": [1, 2.5]},
            {
                "name": "b",
                "datatype": "BYTES",
                "shape": [1],
                "data": ["hi"],
                "parameters": {"k": 1},
            },
        ],
        outputs=[{"name": "p", "parameters": {"binary_data": True, "classification": 2}}],
    )
    request = decode(body)
    assert (request.model, request.version, request.id) == ("model", "1", "req-1")
    assert request.parameters == {"priority": 2}
    assert [t.name for t in request.inputs] == ["a", "b"]
    assert request.inputs[1].parameters == {"k": 1}
    assert request.inputs[1].data.tolist() == [b"hi"]
    (output,) = request.outputs
    assert (output.name, output.binary, dict(output.parameters)) == (
        "p",
        True,
        {"classification": 2},
    )
    assert oip.binary_outputs(request) == {"p"}


def test_request_level_binary_output_applies_to_all_unless_overridden() -> None:
    base = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}
    request = decode(orjson.dumps({**base, "parameters": {"binary_data_output": True}}))
    assert request.binary_output and oip.binary_outputs(request) is True
    outputs = [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}]
    request = decode(
        orjson.dumps({**base, "parameters": {"binary_data_output": True}, "outputs": outputs})
    )
    assert oip.binary_outputs(request) == {"a"}


def test_empty_and_scalar_tensors() -> None:
    request = decode(one_input("FP32", [0, 3], []))
    assert request.inputs[0].data.shape == (0, 3)
    request = decode(one_input("INT64", [], [7]))
    assert request.inputs[0].data.shape == () and request.inputs[0].data.item() == 7
    request = decode(one_input("FP64", [2, 0], [[], []]))
    assert request.inputs[0].data.shape == (2, 0)


def test_decoded_arrays_are_views_of_the_right_shape() -> None:
    request = decode(one_input("FP32", [2, 3], [1, 2, 3, 4, 5, 6]))
    data = request.inputs[0].data
    assert data.shape == (2, 3) and data.dtype == np.float32 and data.flags.c_contiguous


def test_encode_response_layout() -> None:
    result = InferResult(
        "m",
        "3",
        (
            Tensor("p", "FP16", (2,), np.array([0.5, 1.5], dtype=np.float16)),
            Tensor("l", "BYTES", (2,), np.array([b"yes", "no"], dtype=object), {"u": 1}),
            Tensor("f", "FP32", (2, 2), np.arange(4, dtype=">f8").reshape(2, 2)[:, ::-1]),
        ),
        id="7",
        parameters={"t": "x"},
    )
    body, header_length = oip.encode_infer(result)
    assert header_length is None
    doc = orjson.loads(body)
    assert doc == {
        "model_name": "m",
        "model_version": "3",
        "id": "7",
        "parameters": {"t": "x"},
        "outputs": [
            {"name": "p", "datatype": "FP16", "shape": [2], "data": [0.5, 1.5]},
            {
                "name": "l",
                "datatype": "BYTES",
                "shape": [2],
                "data": ["yes", "no"],
                "parameters": {"u": 1},
            },
            {"name": "f", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 0.0, 3.0, 2.0]},
        ],
    }


def test_non_utf8_bytes_need_binary_output() -> None:
    result = InferResult("m", "1", (Tensor("b", "BYTES", (1,), np.array([b"\xff"], dtype=object)),))
    with pytest.raises(InvalidArgument, match="output 'b'.*binary"):
        oip.encode_infer(result)
    body, header_length = oip.encode_infer(result, binary={"b"})
    assert header_length is not None and body.endswith(b"\x01\x00\x00\x00\xff")


def test_small_encoders() -> None:
    assert orjson.loads(oip.encode_error("bad")) == {"error": "bad"}
    assert orjson.loads(oip.encode_live()) == {"live": True}
    assert orjson.loads(oip.encode_ready(False)) == {"ready": False}
    assert orjson.loads(oip.encode_model_ready("m", True)) == {"name": "m", "ready": True}
    meta = oip.encode_server_metadata("shipyard", "0.1.0", ["binary_tensor_data"])
    assert orjson.loads(meta)["extensions"] == ["binary_tensor_data"]
    spec = TensorSpec("x", "FP32", (-1, 4))
    doc = orjson.loads(oip.encode_model_metadata("m", ["1"], "onnx", [spec], [spec]))
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


GOOD = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}


def with_input(**changes: Any) -> bytes:
    tensor = {**GOOD, **changes}
    return json_body(inputs=[{k: v for k, v in tensor.items() if v is not ...}])


BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("array body", b"[1, 2]", "must be a JSON object"),
    ("no inputs", json_body(id="1"), "'inputs' must be a non-empty list"),
    ("empty inputs", json_body(inputs=[]), "non-empty list"),
    ("inputs object", json_body(inputs={"x": 1}), "non-empty list"),
    ("input not object", json_body(inputs=[1]), r"inputs\[0\] must be an object"),
    ("unknown top field", json_body(inputs=[GOOD], model="m"), "unknown field.*'model'"),
    ("unknown input field", with_input(contents={}), "unknown field.*'contents'"),
    ("missing name", with_input(name=...), "'name' must be a non-empty string"),
    ("empty name", with_input(name=""), "'name' must be a non-empty string"),
    ("long name", with_input(name="n" * 201), "limit is 200"),
    ("numeric name", with_input(name=5), "'name' must be"),
    ("missing datatype", with_input(datatype=...), "unknown datatype null"),
    ("unknown datatype", with_input(datatype="FLOAT32"), "unknown datatype 'FLOAT32'"),
    ("lowercase datatype", with_input(datatype="fp32"), "unknown datatype"),
    ("missing shape", with_input(shape=...), "shape must be a list"),
    ("negative dim", with_input(shape=[-1]), "non-negative"),
    ("float dim", with_input(shape=[2.0]), "non-negative integers"),
    ("bool dim", with_input(shape=[True, 2]), "non-negative integers"),
    ("missing data", with_input(data=...), "has no 'data'"),
    ("data object", with_input(data={"a": 1}), "'data' must be a list"),
    ("data scalar", with_input(shape=[], data=1.0), "'data' must be a list"),
    ("too few", with_input(data=[1.0]), "does not match shape"),
    ("too many", with_input(data=[1.0, 2.0, 3.0]), "does not match shape"),
    ("ragged", with_input(shape=[2, 2], data=[[1, 2], [3]]), "does not match shape"),
    (
        "nested wrong order",
        with_input(shape=[2, 3], data=[[1, 2], [3, 4], [5, 6]]),
        "does not match",
    ),
    ("half nested", with_input(shape=[2, 2], data=[[1, 2], 3, 4]), "does not match"),
    ("deeper than shape", with_input(shape=[2], data=[[1], [2]]), "nested list"),
    (
        "string in FP32",
        with_input(data=[1.0, "2"]),
        "FP32 data must be numbers; found a string '2'",
    ),
    ("null in FP32", with_input(data=[1.0, None]), "found null"),
    ("bool in FP32", with_input(data=[True, 1.0]), "found a boolean"),
    ("object in FP32", with_input(data=[{}, 1.0]), "found an object"),
    ("float in INT32", with_input(datatype="INT32", data=[1, 2.5]), "must be integers"),
    ("integral float in INT8", with_input(datatype="INT8", data=[1, 2.0]), "must be integers"),
    ("int in BOOL", with_input(datatype="BOOL", data=[1, 0]), "BOOL data must be booleans"),
    ("number in BYTES", with_input(datatype="BYTES", data=["a", 1]), "BYTES data must be strings"),
    ("INT8 overflow", with_input(datatype="INT8", data=[1, 128]), "out of range for INT8"),
    ("UINT8 negative", with_input(datatype="UINT8", data=[1, -1]), "out of range for UINT8"),
    ("INT64 overflow", with_input(datatype="INT64", data=[1, 2**63]), "out of range for INT64"),
    (
        "UINT64 beyond",
        with_input(datatype="UINT64", data=...).replace(
            b"}]", b',"data":[1,18446744073709551616]}]'
        ),
        "must be integers",
    ),
    ("FP16 overflow", with_input(datatype="FP16", data=[1.0, 70000.0]), "out of range for FP16"),
    ("FP32 overflow", with_input(data=[1.0, 1e39]), "out of range for FP32"),
    ("duplicate names", json_body(inputs=[GOOD, GOOD]), "'x' is given more than once"),
    ("id number", json_body(inputs=[GOOD], id=5), "'id' must be a string"),
    ("long id", json_body(inputs=[GOOD], id="i" * 257), "'id' must be a string of at most"),
    ("params list", json_body(inputs=[GOOD], parameters=[1]), "'parameters' must be an object"),
    ("input params", with_input(parameters="x"), "'parameters' must be an object"),
    (
        "flag not bool",
        json_body(inputs=[GOOD], parameters={"binary_data_output": 1}),
        "true or false",
    ),
    ("outputs object", json_body(inputs=[GOOD], outputs={}), "'outputs' must be a list"),
    ("output no name", json_body(inputs=[GOOD], outputs=[{}]), r"outputs\[0\]: 'name'"),
    ("output extra", json_body(inputs=[GOOD], outputs=[{"name": "a", "x": 1}]), "unknown field"),
    (
        "output dup",
        json_body(inputs=[GOOD], outputs=[{"name": "a"}, {"name": "a"}]),
        "more than once",
    ),
    (
        "binary flag",
        json_body(inputs=[GOOD], outputs=[{"name": "a", "parameters": {"binary_data": "y"}}]),
        "true or false",
    ),
    (
        "binary without header",
        with_input(data=..., parameters={"binary_data_size": 8}),
        "no Inference-Header-Content-Length",
    ),
    (
        "NaN literal",
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
        "not valid JSON",
    ),
    (
        "Infinity",
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [Infinity]}]}',
        "not valid JSON",
    ),
    (
        "huge literal",
        b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": ['
        + b"9" * 4000
        + b"]}]}",
        "not valid JSON",
    ),
    ("truncated", json_body(inputs=[GOOD])[:-3], "not valid JSON"),
    ("empty body", b"", "empty"),
]


@pytest.mark.parametrize(
    "body, message", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_are_invalid_argument(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode(body)


def test_too_many_inputs_and_outputs() -> None:
    limits = Limits(max_tensors=2)
    inputs = [{**GOOD, "name": f"x{i}"} for i in range(3)]
    with pytest.raises(InvalidArgument, match="3 inputs; the limit is 2"):
        decode(json_body(inputs=inputs), limits=limits)
    outputs = [{"name": f"o{i}"} for i in range(3)]
    with pytest.raises(InvalidArgument, match="at most 2"):
        decode(json_body(inputs=[GOOD], outputs=outputs), limits=limits)


def test_huge_declared_shape_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match="'x'"):
        decode(with_input(shape=[10**12], data=[1.0]))
    assert time.perf_counter() - start < 0.5


def test_element_limit_is_per_request() -> None:
    limits = Limits(max_elements=3)
    body = json_body(inputs=[GOOD, {**GOOD, "name": "y"}])
    with pytest.raises(PayloadTooLarge, match="'y'"):
        decode(body, limits=limits)
    decode(body, limits=Limits(max_elements=4))


def test_depth_limit_applies_to_parameters() -> None:
    def body(depth: int) -> bytes:
        # depth of the document = 1 (top object) + 1 (parameters object) + lists
        lists = b"[" * (depth - 2) + b"]" * (depth - 2)
        good = orjson.dumps({"inputs": [GOOD]})[1:-1]
        return b'{"parameters": {"deep": ' + lists + b"}, " + good + b"}"

    assert decode(body(100)).parameters["deep"] is not None
    with pytest.raises(InvalidArgument, match="nested 101 levels"):
        decode(body(101))


def test_body_over_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        decode(json_body(inputs=[GOOD]), limits=Limits(max_body_bytes=10))


@pytest.mark.parametrize("body", [c[1] for c in BAD_REQUESTS])
def test_errors_are_only_shipyard_errors(body: bytes) -> None:
    with pytest.raises(ShipyardError):
        decode(body)
