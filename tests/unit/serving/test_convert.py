"""Tensors → model input and outputs → tensors, merging and splitting, and metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from shipyard.core.errors import Internal, InvalidArgument
from shipyard.core.signatures import Signature, TensorSpec
from shipyard.core.tensors import RequestedOutput, Tensor
from shipyard.serving.convert import ConversionPlan, to_tensor
from shipyard.serving.merge import batch_key, merge, rows_of, split
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.served import synthetic_input

TABLE = Signature(
    (TensorSpec("amount", "FP64", (-1,)), TensorSpec("country", "BYTES", (-1,))),
    (TensorSpec("predict", "INT64", (-1,)),),
    columnar=True,
)
TENSOR = Signature((TensorSpec("input", "FP32", (-1, 3)),), (TensorSpec("predict", "FP32", (-1,)),))
NAMED = Signature((TensorSpec("a", "INT64", (-1,)), TensorSpec("b", "FP32", (-1, 2))))


def plan(signature: Signature | None) -> ConversionPlan:
    def prepare(data: object) -> Any:
        if signature is None:
            return data
        return signature.prepare(data)

    return ConversionPlan(signature, prepare)


def t(name: str, data: Any, datatype: str | None = None) -> Tensor:
    array = np.asarray(data) if not isinstance(data, np.ndarray) else data
    return Tensor(
        name, datatype or ("BYTES" if array.dtype == object else "FP32"), array.shape, array
    )


def test_a_matching_tensor_passes_through_untouched() -> None:
    x = np.ones((2, 3), np.float32)
    prepared, rows = plan(TENSOR).inputs([t("any_name", x)])
    assert prepared is x and rows == 2


def test_tensor_inputs_are_cast_and_checked() -> None:
    prepared, rows = plan(TENSOR).inputs([t("x", np.ones(3), "FP64")])  # one row, no batch dim
    assert isinstance(prepared, np.ndarray) and prepared.dtype == np.float32 and rows == 1
    with pytest.raises(InvalidArgument, match=r"expects shape \[-1, 3\]"):
        plan(TENSOR).inputs([t("x", np.ones((2, 4), np.float32))])
    with pytest.raises(InvalidArgument, match="takes one input"):
        plan(TENSOR).inputs([t("x", np.ones((1, 3))), t("y", np.ones((1, 3)))])
    with pytest.raises(InvalidArgument, match="no inputs"):
        plan(TENSOR).inputs([])
    with pytest.raises(InvalidArgument, match="no rows"):
        plan(TENSOR).inputs([t("x", np.ones((0, 3), np.float32))])


def test_columns_become_a_table_and_bytes_become_text() -> None:
    countries = np.array([b"de", b"fr"], dtype=object)
    prepared, rows = plan(TABLE).inputs(
        [t("country", countries), t("amount", np.array([[1.0], [2.0]]), "FP64")]
    )
    assert isinstance(prepared, pd.DataFrame) and rows == 2
    assert list(prepared.columns) == ["amount", "country"]
    assert prepared["country"].tolist() == ["de", "fr"]
    positional = np.array([[1.5, b"us"], [2.5, b"de"]], dtype=object)
    prepared, _ = plan(TABLE).inputs([t("input", positional)])
    assert isinstance(prepared, pd.DataFrame) and prepared["amount"].tolist() == [1.5, 2.5]


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([t("amount", np.ones(2), "FP64"), t("colour", np.ones(2))], "unknown column 'colour'"),
        ([t("amount", np.ones((2, 2)), "FP64")], r"shape \[n\] or \[n, 1\]"),
        ([t("amount", np.ones(2), "FP64"), t("country", np.array(["a"], object))], "same number"),
        ([t("country", np.array([b"\xff"], object))], "UTF-8"),
        ([t("amount", np.ones(1), "FP64")], "missing input columns: country"),
        ([t("amount", np.ones(1), "FP64"), t("amount", np.ones(1), "FP64")], "only once"),
    ],
)
def test_bad_tables_get_clear_messages(tensors: list[Tensor], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plan(TABLE).inputs(tensors)


def test_named_inputs_and_no_signature() -> None:
    prepared, rows = plan(NAMED).inputs(
        [t("b", np.ones((2, 2), np.float32)), t("a", np.array([1, 2]), "INT64")]
    )
    assert isinstance(prepared, dict) and set(prepared) == {"a", "b"} and rows == 2
    with pytest.raises(InvalidArgument, match="unknown input 'c'"):
        plan(NAMED).inputs([t("c", np.ones(2))])
    raw, rows = plan(None).inputs([t("x", np.array([b"hi"], object))])
    assert isinstance(raw, np.ndarray) and raw.tolist() == ["hi"] and rows == 1
    named, _ = plan(None).inputs([t("x", np.ones(2)), t("y", np.ones(2))])
    assert isinstance(named, dict) and set(named) == {"x", "y"}


def test_outputs_are_encoded_and_requested_ones_checked() -> None:
    outputs = {"predict": np.array(["yes", "no"]), "predict_proba": np.ones((2, 2))}
    tensors = plan(TENSOR).encode(outputs, [])
    assert [(x.name, x.datatype) for x in tensors] == [
        ("predict", "BYTES"),
        ("predict_proba", "FP64"),
    ]
    assert tensors[0].data.tolist() == [b"yes", b"no"]
    only = plan(TENSOR).encode(outputs, [RequestedOutput("predict_proba")])
    assert [x.name for x in only] == ["predict_proba"]
    with pytest.raises(InvalidArgument, match="this model gives: predict, predict_proba"):
        plan(TENSOR).encode(outputs, [RequestedOutput("nope")])
    with pytest.raises(InvalidArgument, match="this model gives: predict"):
        plan(TENSOR).check_outputs([RequestedOutput("nope")])
    assert to_tensor("o", np.array([1, "a"], dtype=object)).data.tolist() == [b"1", b"a"]
    with pytest.raises(Internal, match="unsupported type"):
        to_tensor("c", np.ones(2, np.complex64))


def test_synthetic_warm_up_rows_fit_their_signature() -> None:
    for signature in (TABLE, TENSOR, NAMED):
        assert rows_of(signature.prepare(synthetic_input(signature))) == 2


@given(st.lists(st.integers(0, 5), min_size=1, max_size=8), st.sampled_from(["array", "frame"]))
def test_split_of_merge_gives_each_part_its_rows(sizes: list[int], kind: str) -> None:
    parts: list[Any] = []
    start = 0
    for size in sizes:
        values = np.arange(start, start + size, dtype=np.int64)
        parts.append(values.reshape(-1, 1) if kind == "array" else pd.DataFrame({"v": values}))
        start += size
    assert len({batch_key(p) for p in parts}) == 1
    merged = merge(parts)
    column = merged["v"].to_numpy() if isinstance(merged, pd.DataFrame) else np.asarray(merged)
    outputs = split({"predict": np.asarray(column).reshape(-1) * 10}, sizes, model="m")
    for part, out in zip(parts, outputs, strict=True):
        values = part.reshape(-1) if kind == "array" else part["v"].to_numpy()
        assert out["predict"].tolist() == (values * 10).tolist()


def test_split_refuses_outputs_with_the_wrong_rows() -> None:
    with pytest.raises(Internal, match="returned 3 rows of 'predict' for 4 inputs"):
        split({"predict": np.ones(3)}, [2, 2], model="m")
    with pytest.raises(Internal, match="returned 0 rows"):
        split({"predict": np.float64(1.0)}, [1], model="m")  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="same number of rows"):
        rows_of({"a": np.ones(2), "b": np.ones(3)})


def test_metrics_go_to_the_injected_registry() -> None:
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    for _ in range(3):
        metrics.observe_request("m", "1", "rest-v2", "OK", 0.0002)
    child = metrics.model("m", "1")
    assert metrics.model("m", "1") is child
    child.batch(8)
    child.queue_wait(0.001)
    child.started()
    metrics.loaded("m", 0.3)
    metrics.load_failed("m")
    metrics.serving("m", 1)
    value = registry.get_sample_value
    labels = {"model": "m", "version": "1", "protocol": "rest-v2"}
    assert value("shipyard_requests_total", {**labels, "status": "OK"}) == 3
    assert value("shipyard_request_duration_seconds_bucket", {**labels, "le": "0.00025"}) == 3
    assert value("shipyard_batch_rows_sum", {"model": "m", "version": "1"}) == 8
    assert value("shipyard_requests_in_flight", {"model": "m", "version": "1"}) == 1
    assert value("shipyard_model_load_failures_total", {"model": "m"}) == 1
    assert value("shipyard_model_served_version", {"model": "m"}) == 1
    assert ServingMetrics(CollectorRegistry()) is not None  # no global state: builds twice
