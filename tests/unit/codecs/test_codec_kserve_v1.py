"""KServe v1: instances/inputs in, predictions out."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from shipyard.codecs.kserve_v1 import decode_predict, encode_predict
from shipyard.codecs.limits import Limits
from shipyard.core.errors import InvalidArgument, PayloadTooLarge


def test_instances_become_a_typed_array() -> None:
    array = decode_predict(b'{"instances": [[1, 2.5], [3, 4]]}')
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.float64 and array.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    ints = decode_predict(b'{"inputs": [1, 2, 3]}')
    assert isinstance(ints, np.ndarray) and ints.dtype == np.int64
    strings = decode_predict(b'{"instances": ["a", "' + b"b" * 1000 + b'"]}')
    assert isinstance(strings, np.ndarray) and strings.dtype == object  # no '<U1000' blow-up
    with_null = decode_predict(b'{"instances": [[1, null]]}')
    assert isinstance(with_null, np.ndarray) and np.isnan(with_null[0, 1])


def test_instances_of_objects_stay_records() -> None:
    assert decode_predict(b'{"instances": [{"a": 1}, {"b": "x"}]}') == [{"a": 1}, {"b": "x"}]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[1]", "must be a JSON object"),
        (b"{}", "exactly one of"),
        (b'{"instances": [1], "inputs": [1]}', "exactly one of"),
        (b'{"instances": []}', "non-empty list"),
        (b'{"instances": 3}', "non-empty list"),
        (b'{"instances": [[1, 2], [3]]}', "not rectangular"),
        (b'{"instances": [[1, 2], 3]}', "not rectangular"),
        (b'{"instances": [{"a": 1}, 2]}', "mix of objects"),
        (b'{"instances": [[{"a": 1}]]}', "numbers, strings, booleans or null"),
        (b'{"instances": [NaN]}', "not valid JSON"),
        (b"", "empty"),
    ],
)
def test_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode_predict(body)


def test_limits() -> None:
    with pytest.raises(InvalidArgument, match="limit is 3"):
        decode_predict(b'{"instances": [[1, 2], [3, 4]]}', Limits(max_elements=3))
    with pytest.raises(PayloadTooLarge):
        decode_predict(b'{"instances": [1]}', Limits(max_body_bytes=5))


def test_encode_predict() -> None:
    assert orjson.loads(encode_predict(np.array([[0.5, 1.0]], dtype=np.float32))) == {
        "predictions": [[0.5, 1.0]]
    }
    assert orjson.loads(encode_predict(np.array([b"a", "b"], dtype=object))) == {
        "predictions": ["a", "b"]
    }
    assert orjson.loads(encode_predict(np.array(["x", "yz"]))) == {"predictions": ["x", "yz"]}
    assert orjson.loads(encode_predict([{"a": np.int64(1)}])) == {"predictions": [{"a": 1}]}
