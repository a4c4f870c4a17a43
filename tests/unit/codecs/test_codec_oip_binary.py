"""OIP binary tensor extension: zero-copy round trips and every malformed binary body."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from codec_cases import SAMPLES, make_binary_request, sample_tensor

from shipyard.codecs import oip
from shipyard.codecs.oip_binary import (
    parse_header_length,
    split_body,
    tensor_from_raw,
    tensor_to_raw,
)
from shipyard.core.errors import InvalidArgument, PayloadTooLarge
from shipyard.core.tensors import InferRequest, InferResult, Tensor

DATATYPES = sorted(SAMPLES)


def decode(body: bytes, header_length: int | None) -> InferRequest:
    return oip.decode_infer(body, "m", header_length=header_length)


def read_binary_response(body: bytes, header_length: int) -> dict[str, Tensor]:
    header = orjson.loads(body[:header_length])
    offset, out = header_length, {}
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        raw = body[offset : offset + size]
        offset += size
        out[o["name"]] = tensor_from_raw(o["name"], o["datatype"], o["shape"], raw)
    assert offset == len(body)
    return out


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips_as_binary(datatype: str) -> None:
    tensor = sample_tensor(datatype)
    body, header_length = make_binary_request(
        [tensor], outputs=[{"name": "x", "parameters": {"binary_data": True}}]
    )
    request = decode(body, header_length)
    got = request.inputs[0]
    assert (got.shape, got.datatype, got.data.dtype) == ((2, 2), datatype, tensor.data.dtype)
    assert got.data.tolist() == tensor.data.tolist()
    assert got.parameters == {}  # binary_data_size is wire detail
    response, response_header = oip.encode_infer(
        InferResult("m", "1", request.inputs), binary=oip.binary_outputs(request)
    )
    assert response_header is not None
    assert orjson.loads(response[:response_header])["outputs"][0].get("data") is None
    assert (
        read_binary_response(response, response_header)["x"].data.tolist() == tensor.data.tolist()
    )


def test_fixed_size_inputs_are_read_only_views_of_the_body() -> None:
    tensor = Tensor("x", "FP32", (2, 3), np.arange(6, dtype=np.float32).reshape(2, 3))
    body, header_length = make_binary_request([tensor])
    data = decode(body, header_length).inputs[0].data
    assert not data.flags.owndata and not data.flags.writeable
    assert data.base is not None


def test_mixed_binary_and_json_inputs_keep_order() -> None:
    a, b = sample_tensor("INT16", "a"), sample_tensor("BYTES", "b")
    raw_a, raw_b = tensor_to_raw(a), tensor_to_raw(b)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "INT16",
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": len(raw_a)},
                },
                {"name": "j", "datatype": "FP64", "shape": [1], "data": [0.5]},
                {
                    "name": "b",
                    "datatype": "BYTES",
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": len(raw_b)},
                },
            ]
        }
    )
    request = decode(header + raw_a + raw_b, len(header))
    assert [t.name for t in request.inputs] == ["a", "j", "b"]
    assert request.inputs[2].data.tolist() == b.data.tolist()


def test_header_only_binary_request() -> None:
    header = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [3]}]}
    )
    assert decode(header, len(header)).inputs[0].data.tolist() == [3]


def test_raw_layout_is_little_endian_and_bytes_are_length_prefixed() -> None:
    assert tensor_to_raw(Tensor("x", "INT32", (2,), np.array([1, -2], dtype=">i4"))) == struct.pack(
        "<ii", 1, -2
    )
    assert tensor_to_raw(Tensor("x", "BOOL", (2,), np.array([True, False]))) == b"\x01\x00"
    strings = Tensor("x", "BYTES", (2,), np.array([b"ab", "é"], dtype=object))
    assert tensor_to_raw(strings) == b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9"
    fp = Tensor("x", "FP32", (2, 2), np.arange(4, dtype=np.float64).reshape(2, 2).T)
    assert tensor_to_raw(fp) == np.array([[0, 2], [1, 3]], dtype="<f4").tobytes()


def test_tensor_from_raw_checks_shape_and_limits() -> None:
    t = tensor_from_raw("x", "UINT16", [3], b"\x01\x00\x02\x00\x03\x00")
    assert t.data.tolist() == [1, 2, 3]
    with pytest.raises(InvalidArgument, match="unknown datatype"):
        tensor_from_raw("x", "FLOAT", [1], b"\x00" * 4)
    with pytest.raises(PayloadTooLarge):
        tensor_from_raw("x", "FP32", [10**12], b"")
    with pytest.raises(InvalidArgument, match="needs 8"):
        tensor_from_raw("x", "FP32", [2], b"\x00" * 7)


def header_for(inputs: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"inputs": inputs})


def binary_input(
    size: object, datatype: str = "FP32", shape: list[int] | None = None
) -> dict[str, object]:
    return {
        "name": "x",
        "datatype": datatype,
        "shape": shape or [2],
        "parameters": {"binary_data_size": size},
    }


BAD: list[tuple[str, bytes, int, str]] = []


def bad(
    label: str, header: bytes, tail: bytes, message: str, header_length: int | None = None
) -> None:
    BAD.append(
        (label, header + tail, len(header) if header_length is None else header_length, message)
    )


bad("header longer than body", header_for([binary_input(8)]), b"\x00" * 8, "body has only", 10**6)
bad("negative header length", header_for([binary_input(8)]), b"\x00" * 8, "body has only", -1)
bad("header cut inside JSON", header_for([binary_input(8)]), b"\x00" * 8, "not valid JSON", 10)
bad("size past the end", header_for([binary_input(16)]), b"\x00" * 8, "runs past the end")
bad("tail longer than sizes", header_for([binary_input(8)]), b"\x00" * 12, "4 bytes more")
bad("size not matching shape", header_for([binary_input(4)]), b"\x00" * 4, "needs 8")
bad("size negative", header_for([binary_input(-8)]), b"", "non-negative integer")
bad("size string", header_for([binary_input("8")]), b"\x00" * 8, "non-negative integer")
bad("size bool", header_for([binary_input(True)]), b"\x00", "non-negative integer")
bad(
    "data and size",
    header_for([{**binary_input(8), "data": [1.0, 2.0]}]),
    b"\x00" * 8,
    "both 'data'",
)
bad("bool byte 2", header_for([binary_input(2, "BOOL")]), b"\x01\x02", "0 or 1")
bad(
    "bytes prefix past end",
    header_for([binary_input(9, "BYTES", [1])]),
    b"\x09\x00\x00\x00abcde",
    "past the end",
)
bad(
    "bytes prefix truncated",
    header_for([binary_input(6, "BYTES", [2])]),
    b"\x01\x00\x00\x00a\x00",
    "cannot hold 2",
)
bad(
    "bytes missing prefix",
    header_for([binary_input(8, "BYTES", [2])]),
    b"\x01\x00\x00\x00a\x00\x00\x00",
    "missing its length",
)
bad(
    "bytes trailing",
    header_for([binary_input(7, "BYTES", [1])]),
    b"\x01\x00\x00\x00abc",
    "2 bytes left",
)
bad(
    "bytes count too big",
    header_for([binary_input(8, "BYTES", [10**6])]),
    b"\x00" * 8,
    "cannot hold",
)
bad(
    "huge prefix",
    header_for([binary_input(8, "BYTES", [1])]),
    b"\xff\xff\xff\xff\x00\x00\x00\x00",
    "past the end",
)
bad("unknown datatype", header_for([binary_input(8, "F32")]), b"\x00" * 8, "unknown datatype")


@pytest.mark.parametrize(
    "body, header_length, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_malformed_binary_bodies(body: bytes, header_length: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode(body, header_length)


@pytest.mark.parametrize("value, expected", [(None, None), ("0", 0), (" 123 ", 123)])
def test_parse_header_length(value: str | None, expected: int | None) -> None:
    assert parse_header_length(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "1.5", "0x10", "1e3", "9" * 20, "١٢"])
def test_parse_header_length_rejects(value: str) -> None:
    with pytest.raises(InvalidArgument, match="Inference-Header-Content-Length"):
        parse_header_length(value)


def test_split_body_is_zero_copy_for_the_tail() -> None:
    header, tail = split_body(b"{}abcd", 2)
    assert header == b"{}" and isinstance(tail, memoryview) and tail.tobytes() == b"abcd"


def test_encode_mixed_binary_and_json_outputs() -> None:
    result = InferResult(
        "m",
        "1",
        (
            Tensor("a", "FP64", (2,), np.array([1.0, 2.0])),
            Tensor("b", "INT8", (1,), np.array([5], dtype=np.int8), {"keep": True}),
        ),
    )
    body, header_length = oip.encode_infer(result, binary={"b"})
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert header["outputs"][0]["data"] == [1.0, 2.0]
    assert header["outputs"][1]["parameters"] == {"keep": True, "binary_data_size": 1}
    assert body[header_length:] == b"\x05"
    body, header_length = oip.encode_infer(result, binary=True)
    assert body[header_length:] == np.array([1.0, 2.0], dtype="<f8").tobytes() + b"\x05"
    assert oip.encode_infer(result, binary=set())[1] is None
