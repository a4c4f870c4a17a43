"""Bad input meets the right gRPC status (never UNKNOWN), and the server keeps answering."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_harness import LoopThread, Served, serve
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import ErrorKind
from shipyard.transports.grpc import STATUS
from shipyard.transports.grpc._generated import open_inference_grpc_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


def test_every_error_kind_has_a_status() -> None:
    assert set(STATUS) == set(ErrorKind)
    assert grpc.StatusCode.UNKNOWN not in STATUS.values()
    assert grpc.StatusCode.OK not in STATUS.values()


def raw_request(
    datatype: str, shape: list[int], raw: bytes, model: str = "echo"
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def typed_request(datatype: str, shape: list[int], **values: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="echo")
    item = request.inputs.add(name="x", datatype=datatype, shape=shape)
    for field, items in values.items():
        getattr(item.contents, field).extend(items)
    return request


def _two_raws() -> pb.ModelInferRequest:
    request = raw_request("FP32", [1], struct.pack("<f", 1.0))
    request.raw_input_contents.append(b"")
    return request


def _raw_and_typed() -> pb.ModelInferRequest:
    request = raw_request("FP32", [1], struct.pack("<f", 1.0))
    request.inputs[0].contents.fp32_contents.append(1.0)
    return request


def _duplicate_inputs() -> pb.ModelInferRequest:
    request = typed_request("INT32", [1], int_contents=[1])
    request.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(2)
    return request


def _bad_parameter() -> pb.ModelInferRequest:
    request = typed_request("INT32", [1], int_contents=[1])
    request.parameters["empty"].Clear()
    request.parameters["empty"].SetInParent()
    return request


BAD: dict[str, tuple[Callable[[], pb.ModelInferRequest], grpc.StatusCode, str]] = {
    "unknown model": (lambda: raw_request("FP32", [1], b"\0" * 4, "nope"), grpc.StatusCode.NOT_FOUND, "not found"),
    "no model name": (lambda: raw_request("FP32", [1], b"\0" * 4, ""), INVALID, "name"),
    "no inputs": (lambda: pb.ModelInferRequest(model_name="echo"), INVALID, "no inputs"),
    "raw size mismatch": (lambda: raw_request("FP32", [2], b"\0" * 4), INVALID, "needs 8"),
    "raw count mismatch": (_two_raws, INVALID, "2 raw_input_contents for 1 inputs"),
    "raw and typed": (_raw_and_typed, INVALID, "raw_input_contents"),
    "bytes prefix past end": (lambda: raw_request("BYTES", [1], struct.pack("<I", 99) + b"ab"), INVALID, "past the end"),
    "bytes missing prefix": (lambda: raw_request("BYTES", [2], struct.pack("<I", 1) + b"a"), INVALID, "cannot hold"),
    "bytes trailing data": (lambda: raw_request("BYTES", [1], struct.pack("<I", 1) + b"abc"), INVALID, "left after"),
    "bool not 0/1": (lambda: raw_request("BOOL", [1], b"\x02"), INVALID, "0 or 1"),
    "unknown datatype": (lambda: raw_request("FP8", [1], b"\0"), INVALID, "unknown datatype"),
    "negative dimension": (lambda: raw_request("FP32", [-1], b""), INVALID, "non-negative"),
    "too many elements": (lambda: raw_request("FP32", [2**40], b""), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than allowed"),
    "product over the limit": (lambda: raw_request("INT8", [2**12, 2**12, 2**12], b""), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than allowed"),
    "typed count mismatch": (lambda: typed_request("FP32", [3], fp32_contents=[1.0]), INVALID, "needs 3"),
    "typed wrong field": (lambda: typed_request("FP32", [1], fp32_contents=[1.0], int64_contents=[1]), INVALID, "int64_contents"),
    "typed fp16": (lambda: typed_request("FP16", [1]), INVALID, "raw_input_contents"),
    "typed out of range": (lambda: typed_request("INT8", [1], int_contents=[300]), INVALID, "out of range"),
    "no contents": (lambda: typed_request("FP32", [0]), INVALID, "no contents"),
    "duplicate inputs": (_duplicate_inputs, INVALID, "more than once"),
    "empty parameter": (_bad_parameter, INVALID, "has no value"),
    "unknown requested output": (lambda: _with_output(typed_request("INT32", [1], int_contents=[1]), "y"), INVALID, "unknown output"),
    "data plane unavailable": (lambda: raw_request("FP32", [1], b"\0" * 4, "busy"), grpc.StatusCode.UNAVAILABLE, "retry later"),
}  # fmt: skip


def _with_output(request: pb.ModelInferRequest, name: str) -> pb.ModelInferRequest:
    request.outputs.add(name=name)
    return request


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_gets_its_status(stub: Any, case: str) -> None:
    build, code, words = BAD[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(build(), timeout=10)
    assert err.value.code() == code, err.value.details()
    assert words in str(err.value.details())
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_unexpected_error_is_internal_and_generic(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(raw_request("FP32", [1], b"\0" * 4, "boom"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    details = str(err.value.details())
    assert details.startswith("internal error (ref ")
    assert "secret" not in details and "Traceback" not in details and "RuntimeError" not in details
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_undecodable_message_is_invalid_argument(channel: grpc.Channel, stub: Any) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes]
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as err:
        call(b"\xff\xff\xff", timeout=10)
    assert err.value.code() == INVALID
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_message_over_the_size_limit_is_resource_exhausted(loop: LoopThread) -> None:
    small: Served = serve(loop, max_message_bytes=1024)
    try:
        with grpc.insecure_channel(small.url) as channel:
            call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as err:
                call(raw_request("UINT8", [4096], b"\0" * 4096), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small.stop(None)


@settings(max_examples=150, deadline=None)
@given(
    datatype=st.sampled_from([*DATATYPES, "", "fp32", "STRING"]),
    shape=st.lists(st.integers(-2, 40), max_size=4),
    raw=st.binary(max_size=256),
)
def test_random_raw_contents_never_unknown(
    stub: Any, datatype: str, shape: list[int], raw: bytes
) -> None:
    try:
        stub.ModelInfer(raw_request(datatype, shape, raw), timeout=10)
    except grpc.RpcError as err:
        assert err.code() in (INVALID, grpc.StatusCode.RESOURCE_EXHAUSTED), err.details()


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=512))
def test_random_message_bytes_never_unknown(channel: grpc.Channel, body: bytes) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes]
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    try:
        call(body, timeout=10)
    except grpc.RpcError as err:
        allowed = (INVALID, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert err.code() in allowed, err.details()
