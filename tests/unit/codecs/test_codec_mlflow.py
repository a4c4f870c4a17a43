"""MLflow /invocations: the four JSON formats, CSV, content types and bounds."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from shipyard.codecs.limits import Limits
from shipyard.codecs.mlflow import MlflowInput, decode_invocations, encode_predictions
from shipyard.core.errors import InvalidArgument, PayloadTooLarge, UnsupportedMedia


def decode(doc: object, content_type: str = "application/json", **kwargs: object) -> MlflowInput:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return decode_invocations(body, content_type, **kwargs)  # type: ignore[arg-type]


def test_dataframe_split() -> None:
    got = decode(
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]], "index": [5, 6]}}
    )
    assert isinstance(got.data, pd.DataFrame)
    assert got.data.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}
    assert list(got.data.index) == [5, 6]
    assert got.params == {}


def test_dataframe_records_and_params() -> None:
    got = decode({"dataframe_records": [{"a": 1, "b": 2.5}, {"a": 3}], "params": {"k": 1}})
    assert isinstance(got.data, pd.DataFrame)
    assert list(got.data.columns) == ["a", "b"] and np.isnan(got.data["b"][1])
    assert got.params == {"k": 1}


def test_instances_and_inputs() -> None:
    got = decode({"instances": [[1.0, 2.0], [3.0, 4.0]]})
    assert isinstance(got.data, np.ndarray) and got.data.shape == (2, 2)
    got = decode({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]})
    assert isinstance(got.data, dict) and got.data["a"].tolist() == [1, 2]
    got = decode({"inputs": {"a": [1, 2], "b": [[1.5], [2.5]]}})
    assert isinstance(got.data, dict) and got.data["b"].shape == (2, 1)
    got = decode({"inputs": [[True, False]]})
    assert isinstance(got.data, np.ndarray) and got.data.dtype == np.bool_


@pytest.mark.parametrize("content_type", ["text/csv", "application/csv", "text/csv; charset=utf-8"])
def test_csv(content_type: str) -> None:
    got = decode(b"a,b\n1,x\n2,y\n", content_type)
    assert isinstance(got.data, pd.DataFrame)
    assert got.data.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize(
    "doc, message",
    [
        ({}, "exactly one of dataframe_split, dataframe_records, instances, inputs; got none"),
        ({"instances": [1], "inputs": [1]}, "got instances, inputs"),
        ({"columns": ["a"], "data": [[1]]}, "got none"),
        ([1, 2], "JSON object"),
        ({"instances": [1], "params": [1]}, "'params' must be an object"),
        ({"dataframe_split": [1]}, "columns, data and index"),
        ({"dataframe_split": {"columns": ["a"]}}, "columns, data and index"),
        ({"dataframe_split": {"data": [[1]], "extra": 1}}, "columns, data and index"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}, "every row must have 2"),
        ({"dataframe_split": {"columns": [1], "data": [[1]]}}, "list of strings"),
        ({"dataframe_split": {"data": [1, 2]}}, "list of rows"),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [1, 2]}},
            "one label per row",
        ),
        ({"dataframe_records": {"a": 1}}, "list of objects"),
        ({"dataframe_records": [{"a": 1}, 2]}, "list of objects"),
        ({"instances": [[1, 2], [3]]}, "not rectangular"),
        ({"instances": [{"a": 1}, {"b": 1}]}, "same keys"),
        ({"instances": "abc"}, "expected a list"),
        ({"inputs": {"a": [[1], 2]}}, "not rectangular"),
    ],
)
def test_bad_json_bodies(doc: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode(doc)


@pytest.mark.parametrize(
    "body", [b"", b"\n", b'a,b\n1,2,3,4\n"unterminated', b"\xff\xfe,\x00\n1,2"]
)
def test_bad_csv(body: bytes) -> None:
    with pytest.raises(InvalidArgument):
        decode(body, "text/csv")


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"],
)
def test_other_content_types_are_unsupported(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMedia):
        decode_invocations(b'{"instances": [1]}', content_type)


def test_records_with_distinct_keys_cannot_blow_up() -> None:
    records = [{f"k{i}": 1} for i in range(5000)]  # would be 5000 x 5000 cells
    with pytest.raises(InvalidArgument, match="the limit is 1000000 values"):
        decode({"dataframe_records": records}, limits=Limits(max_elements=1_000_000))


def test_csv_and_body_bounds() -> None:
    with pytest.raises(InvalidArgument, match="limit is 10 values"):
        decode(b"a,b,c\n" + b"1,2,3\n" * 5, "text/csv", limits=Limits(max_elements=10))
    with pytest.raises(PayloadTooLarge):
        decode(b"a\n1\n", "text/csv", limits=Limits(max_body_bytes=2))


def test_encode_predictions_like_mlflow() -> None:
    def predictions(values: object) -> object:
        return orjson.loads(encode_predictions(values))["predictions"]  # type: ignore[arg-type]

    assert predictions(np.array([1, 0])) == [1, 0]
    assert predictions(np.array([[0.25, 0.75]], dtype=np.float32)) == [[0.25, 0.75]]
    frame = pd.DataFrame({"label": ["a", "b"], "p": [0.5, 0.25]})
    assert predictions(frame) == [{"label": "a", "p": 0.5}, {"label": "b", "p": 0.25}]
    named = {"label": np.array([b"a", b"b"], dtype=object), "p": np.array([0.5, 0.25])}
    assert predictions(named) == [{"label": "a", "p": 0.5}, {"label": "b", "p": 0.25}]
    uneven = {"probs": np.array([[0.5, 0.5]]), "label": np.array([1])}
    assert predictions(uneven) == {"probs": [[0.5, 0.5]], "label": [1]}
    assert predictions(pd.DataFrame({"t": pd.to_datetime(["2024-01-02"])})) == [
        {"t": "2024-01-02T00:00:00"}
    ]
