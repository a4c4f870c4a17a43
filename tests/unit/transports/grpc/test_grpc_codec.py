"""The gRPC codec on its own: messages <-> core types, no socket."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.codecs.limits import Limits
from shipyard.core.errors import Internal, InvalidArgument, PayloadTooLarge
from shipyard.core.tensors import InferResult, Tensor
from shipyard.transports.grpc import codec
from shipyard.transports.grpc._generated import open_inference_grpc_pb2 as pb


def _typed(
    datatype: str, shape: list[int], field: str, values: list[object]
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", model_version="3", id="abc")
    item = request.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(item.contents, field).extend(values)
    return request


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("BOOL", "bool_contents", [True, False], np.bool_),
        ("UINT16", "uint_contents", [0, 65535], np.uint16),
        ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
        ("INT64", "int64_contents", [-(2**63), 5], np.int64),
        ("FP64", "fp64_contents", [0.5, -1e-300], np.float64),
    ],
)
def test_typed_inputs_decode_to_their_dtype(
    datatype: str, field: str, values: list[object], dtype: type
) -> None:
    request = codec.decode_infer(_typed(datatype, [2, 1], field, values))
    (tensor,) = request.inputs
    assert tensor.data.dtype == np.dtype(dtype) and tensor.shape == (2, 1)
    assert tensor.data.reshape(-1).tolist() == values
    assert (request.model, request.version, request.id) == ("m", "3", "abc")
    assert not request.binary_output


def test_raw_inputs_are_views_of_the_message() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    request.raw_input_contents.append(np.array([1.0, 2.0], dtype="<f4").tobytes())
    request.outputs.add(name="y").parameters["top_k"].int64_param = 2
    decoded = codec.decode_infer(request)
    assert decoded.binary_output and decoded.version is None and decoded.id is None
    assert decoded.inputs[0].data.tolist() == [1.0, 2.0]
    assert not decoded.inputs[0].data.flags.owndata
    (wanted,) = decoded.outputs
    assert wanted.name == "y" and wanted.parameters == {"top_k": 2}


def test_element_budget_is_shared_by_all_inputs() -> None:
    request = _typed("INT32", [3], "int_contents", [1, 2, 3])
    request.inputs.add(name="y", datatype="INT32", shape=[3]).contents.int_contents.extend(
        [1, 2, 3]
    )
    with pytest.raises(PayloadTooLarge):
        codec.decode_infer(request, Limits(max_elements=5))
    assert len(codec.decode_infer(request, Limits(max_elements=6)).inputs) == 2


def test_long_id_is_refused() -> None:
    request = _typed("INT32", [1], "int_contents", [1])
    request.id = "i" * 300
    with pytest.raises(InvalidArgument, match="id is 300 characters"):
        codec.decode_infer(request)


def _result(*outputs: Tensor) -> InferResult:
    return InferResult(
        "m", "2", outputs, "r", {"a": True, "n": -3, "u": 2**64 - 1, "f": 0.5, "s": "t"}
    )


def test_encode_typed_and_raw() -> None:
    strided = np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2]  # not contiguous
    big_endian = np.array([1.5, 2.5], dtype=">f8")
    words = np.array(["ab", b"c"], dtype=object)
    result = _result(
        Tensor("i", "INT64", (2, 2), strided),
        Tensor("f", "FP64", (2,), big_endian),
        Tensor("w", "BYTES", (2,), words),
    )
    typed = codec.encode_infer(result, raw=False)
    assert not typed.raw_output_contents
    assert list(typed.outputs[0].contents.int64_contents) == [0, 2, 3, 5]
    assert list(typed.outputs[1].contents.fp64_contents) == [1.5, 2.5]
    assert list(typed.outputs[2].contents.bytes_contents) == [b"ab", b"c"]
    params = typed.parameters
    assert params["a"].bool_param and params["n"].int64_param == -3
    assert params["u"].uint64_param == 2**64 - 1 and params["f"].double_param == 0.5
    assert params["s"].string_param == "t"
    raw = codec.encode_infer(result, raw=True)
    assert raw.raw_output_contents[0] == np.array([0, 2, 3, 5], dtype="<i8").tobytes()
    assert raw.raw_output_contents[1] == np.array([1.5, 2.5], dtype="<f8").tobytes()
    assert raw.raw_output_contents[2] == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
    assert not raw.outputs[0].HasField("contents")


def test_fp16_output_makes_a_typed_answer_raw() -> None:
    result = _result(
        Tensor("h", "FP16", (1,), np.array([0.5], dtype=np.float16)),
        Tensor("x", "FP32", (1,), np.array([1.0], dtype=np.float32)),
    )
    response = codec.encode_infer(result, raw=False)
    assert len(response.raw_output_contents) == 2
    assert response.raw_output_contents[0] == np.array([0.5], dtype="<f2").tobytes()


def test_unencodable_parameter_is_internal() -> None:
    result = InferResult("m", "1", (), None, {"bad": object()})
    with pytest.raises(Internal):
        codec.encode_infer(result, raw=True)
