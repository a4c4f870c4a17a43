from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import (
    Signature,
    TensorSpec,
    datatype_of,
    infer_signature,
    numpy_dtype,
)


def test_tensor_signature_from_array() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype=np.float32))
    assert sig.inputs == (TensorSpec("input", "FP32", (-1, 3)),)
    assert not sig.columnar
    assert Signature.from_dict(sig.to_dict()) == sig


def test_columnar_signature_from_frame() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2], "c": ["x", "y"], "d": [True, False]})
    sig = infer_signature(frame)
    assert sig.columnar
    assert [(s.name, s.datatype) for s in sig.inputs] == [
        ("a", "FP64"),
        ("b", "INT64"),
        ("c", "BYTES"),
        ("d", "BOOL"),
    ]


def test_outputs_are_recorded() -> None:
    sig = infer_signature(np.zeros((2, 3))).with_outputs(
        {"predict": np.array([0, 1]), "predict_proba": np.zeros((2, 2))}
    )
    assert sig.outputs == (
        TensorSpec("predict", "INT64", (-1,)),
        TensorSpec("predict_proba", "FP64", (-1, 2)),
    )


def test_prepare_tensor_casts_and_accepts_a_single_row() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype=np.float32))
    out = sig.prepare([1, 2, 3])
    assert isinstance(out, np.ndarray)
    assert out.shape == (1, 3) and out.dtype == np.float32


def test_prepare_tensor_wrong_width_names_the_input() -> None:
    sig = infer_signature(np.zeros((4, 20)))
    with pytest.raises(
        InvalidArgument, match=r"input 'input' expects shape \[-1, 20\]; got \[5, 19\]"
    ):
        sig.prepare(np.zeros((5, 19)))


def test_prepare_tensor_non_numeric_is_refused() -> None:
    sig = infer_signature(np.zeros((4, 2)))
    with pytest.raises(InvalidArgument, match="non-numeric values such as 'abc'"):
        sig.prepare(np.array([["1.0", "abc"]], dtype=object))


def test_prepare_tensor_no_rows() -> None:
    sig = infer_signature(np.zeros((4, 2)))
    with pytest.raises(InvalidArgument, match="no rows"):
        sig.prepare(np.zeros((0, 2)))


def test_prepare_int_input_refuses_fractions() -> None:
    sig = infer_signature(np.zeros((2, 2), dtype=np.int64))
    out = sig.prepare(np.array([[1.0, 2.0]]))
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    with pytest.raises(InvalidArgument, match="fractional"):
        sig.prepare(np.array([[1.5, 2.0]]))


def test_prepare_table_missing_column_and_extra_columns() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0], "b": ["x"]}))
    with pytest.raises(InvalidArgument, match="missing input columns: b"):
        sig.prepare(pd.DataFrame({"a": [1.0]}))
    out = sig.prepare(pd.DataFrame({"b": ["y"], "a": [2], "extra": [0]}))
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b"] and out["a"].dtype == np.float64


def test_prepare_table_from_records_and_dicts() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0], "b": ["x"]}))
    records = sig.prepare([{"a": 1, "b": "q"}, {"a": 2, "b": "r"}])
    columns = sig.prepare({"a": [1, 2], "b": ["q", "r"]})
    assert isinstance(records, pd.DataFrame) and isinstance(columns, pd.DataFrame)
    pd.testing.assert_frame_equal(records, columns)


def test_prepare_table_non_numeric_column() -> None:
    sig = infer_signature(pd.DataFrame({"age": [1.0]}))
    with pytest.raises(InvalidArgument, match="column 'age' expects FP64 but holds non-numeric"):
        sig.prepare(pd.DataFrame({"age": ["old"]}))


def test_named_tensors() -> None:
    sig = infer_signature({"x": np.zeros((2, 2)), "y": np.zeros((2,))})
    out = sig.prepare({"x": np.ones((1, 2)), "y": np.ones(1)})
    assert isinstance(out, dict) and set(out) == {"x", "y"}
    with pytest.raises(InvalidArgument, match="missing inputs: y"):
        sig.prepare({"x": np.ones((1, 2))})
    with pytest.raises(InvalidArgument, match="named inputs"):
        sig.prepare(np.ones((1, 2)))


def test_datatypes() -> None:
    assert datatype_of(np.dtype("float16")) == "FP16"
    assert datatype_of(pd.StringDtype()) == "BYTES"
    assert datatype_of(pd.Int64Dtype()) == "INT64"
    assert numpy_dtype("BYTES") == np.dtype(object)
    with pytest.raises(InvalidArgument, match="unknown datatype 'FP99'"):
        numpy_dtype("FP99")


def test_unsupported_input_type() -> None:
    with pytest.raises(InvalidArgument, match="cannot use a int"):
        infer_signature(3)
