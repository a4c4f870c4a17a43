"""Bounded JSON loading: size, depth (exact, strings and escapes ignored) and shapes."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.codecs import limits
from shipyard.codecs.limits import DEFAULT_LIMITS, Limits, json_depth, load_json, parse_shape
from shipyard.core.errors import InvalidArgument, PayloadTooLarge


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


def test_depth_100_is_allowed_and_101_refused() -> None:
    assert load_json(nested(100), DEFAULT_LIMITS) is not None
    with pytest.raises(InvalidArgument, match="nested 101 levels deep; the limit is 100"):
        load_json(nested(101), DEFAULT_LIMITS)


def test_beyond_orjson_recursion_limit_is_our_error() -> None:
    with pytest.raises(InvalidArgument, match="nested 5000 levels"):
        load_json(nested(5000), DEFAULT_LIMITS)


def test_brackets_inside_strings_do_not_count() -> None:
    body = orjson.dumps({"a": "[" * 500, "b": ['\\"[[[[', "\\\\", '"{{{{']})
    assert json_depth(body) == 2
    load_json(body, DEFAULT_LIMITS)


def test_large_bodies_take_the_vectorised_path() -> None:
    flat = orjson.dumps({"data": list(range(5000)), "s": "[" * 300})
    assert len(flat) > limits._SMALL
    load_json(flat, DEFAULT_LIMITS)
    deep = orjson.dumps({"pad": "x" * 5000, "d": json.loads(nested(150))})
    with pytest.raises(InvalidArgument, match="nested 151 levels"):
        load_json(deep, DEFAULT_LIMITS)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values, st.integers(min_value=1, max_value=64))
def test_depth_matches_the_parsed_structure(value: Any, chunk: int) -> None:
    body = orjson.dumps(value)
    saved = limits._CHUNK
    limits._CHUNK = chunk  # exercise state carried across chunk boundaries
    try:
        assert json_depth(body) == reference_depth(value)
    finally:
        limits._CHUNK = saved


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b'{"inputs": [1, 2', "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": Infinity}', "not valid JSON"),
        (b'{"a": 1e400}', "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b'{"a": 1} trailing', "not valid JSON"),
    ],
)
def test_malformed_json_is_invalid_argument(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_json(body, DEFAULT_LIMITS)


def test_body_over_the_limit_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="the limit is 1 MiB"):
        load_json(b"[" + b"1," * 600_000 + b"1]", Limits(max_body_bytes=1024 * 1024))


def test_huge_shape_fails_fast_before_any_allocation() -> None:
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match="larger than allowed"):
        parse_shape("x", [10**12], DEFAULT_LIMITS, DEFAULT_LIMITS.max_elements)
    with pytest.raises(PayloadTooLarge):
        parse_shape("x", [10**6, 10**6], DEFAULT_LIMITS, DEFAULT_LIMITS.max_elements)
    with pytest.raises(PayloadTooLarge):  # absurd even when another dimension is 0
        parse_shape("x", [10**9, 0], DEFAULT_LIMITS, DEFAULT_LIMITS.max_elements)
    with pytest.raises(PayloadTooLarge):
        parse_shape("x", [2**62] * 32, DEFAULT_LIMITS, DEFAULT_LIMITS.max_elements)
    assert time.perf_counter() - start < 1.0


def test_element_budget_is_shared() -> None:
    assert parse_shape("x", [4, 5], DEFAULT_LIMITS, 20) == ((4, 5), 20)
    with pytest.raises(PayloadTooLarge):
        parse_shape("x", [4, 5], DEFAULT_LIMITS, 19)


@pytest.mark.parametrize(
    "shape", [None, 3, "3", [1.0], [1e12], [-1], [True], [[2]], {"a": 1}, [1] * 33]
)
def test_bad_shapes_are_invalid_argument(shape: object) -> None:
    with pytest.raises(InvalidArgument, match="'x'"):
        parse_shape("x", shape, DEFAULT_LIMITS, DEFAULT_LIMITS.max_elements)


def test_messages_show_bounded_values() -> None:
    assert len(limits.show(list(range(10**5)))) < 80
    assert limits.show(None) == "null"
    assert limits.show(True) == "true"


def test_value_count_is_bounded_before_parsing() -> None:
    small = Limits(max_elements=1000)
    load_json(b"[" + b"1," * 5000 + b"1]", small)  # within 2 x elements + slack
    with pytest.raises(PayloadTooLarge, match="more JSON values"):
        load_json(b"[" + b"[]," * 10_000 + b"[]]", small)
