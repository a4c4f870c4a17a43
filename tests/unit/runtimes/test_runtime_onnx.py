"""onnx flavor: validation, external data refusal, input/output mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import PRIMARY_OUTPUT
from shipyard.runtimes.onnx import MODEL_FILE, OnnxFlavor, OnnxRuntime

FLAVOR = OnnxFlavor()


def affine_model(external: bool = False) -> onnx.ModelProto:
    """y = x @ W + 1 (W 3x2), plus a second output z = x summed over columns."""
    weights = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    if external:
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
        entry = weights.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
    one = numpy_helper.from_array(np.ones(2, dtype=np.float32), "one")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "one"], ["y"]),
            helper.make_node("ReduceSum", ["x"], ["z"], keepdims=0),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, []),
        ],
        initializer=[weights, one],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def columnar_model() -> onnx.ModelProto:
    """Two column inputs (double a, int64 b) → out = a + b as double, shape (n, 1)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b64"], to=TensorProto.DOUBLE),
            helper.make_node("Add", ["a", "b64"], ["out"]),
        ],
        "columns",
        [
            helper.make_tensor_value_info("a", TensorProto.DOUBLE, [None, 1]),
            helper.make_tensor_value_info("b", TensorProto.INT64, [None, 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.DOUBLE, [None, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_round_trip_without_mapping_keeps_names_and_adds_predict(tmp_path: Path) -> None:
    saved = FLAVOR.save(affine_model(), tmp_path, trust=False)
    runtime = FLAVOR.load({MODEL_FILE: tmp_path / MODEL_FILE}, saved.meta)
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])  # float64 is cast to the input's float
    out = runtime.predict(x)
    expected = x.astype(np.float32) @ np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    assert set(out) == {"y", "z", PRIMARY_OUTPUT}
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], expected)
    np.testing.assert_array_equal(out["y"], expected)
    assert out[PRIMARY_OUTPUT].dtype == np.float32
    # A DataFrame and a mapping by input name are accepted too.
    np.testing.assert_array_equal(runtime.predict(pd.DataFrame(x))["y"], expected)
    np.testing.assert_array_equal(runtime.predict({"x": x})["y"], expected)


def test_columnar_mapping_flatten_and_dtype(tmp_path: Path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(columnar_model().SerializeToString())
    meta = {
        "columns": [["alpha", "a"], ["beta", "b"]],
        "outputs": {"out": PRIMARY_OUTPUT},
        "flatten": [PRIMARY_OUTPUT],
        "dtypes": {PRIMARY_OUTPUT: "<f4"},
    }
    runtime = FLAVOR.load({MODEL_FILE: tmp_path / MODEL_FILE}, meta)
    frame = pd.DataFrame({"alpha": [0.5, 1.5], "beta": [1, 2]})
    out = runtime.predict(frame)
    assert set(out) == {PRIMARY_OUTPUT}
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], np.array([1.5, 3.5], dtype=np.float32))
    assert out[PRIMARY_OUTPUT].dtype == np.float32


def test_read_accepts_bytes_and_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(affine_model().SerializeToString())
    assert FLAVOR.sniff(path)
    model = FLAVOR.read(path, trust=False)
    assert isinstance(model, onnx.ModelProto)
    assert FLAVOR.handles(model)
    assert FLAVOR.handles(path.read_bytes())
    assert not FLAVOR.handles(b"not onnx at all")
    saved = FLAVOR.save(path.read_bytes(), tmp_path, trust=False)
    assert saved.files == (MODEL_FILE,)


def test_external_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    path.write_bytes(affine_model(external=True).SerializeToString())
    with pytest.raises(InvalidArgument, match="external data"):
        FLAVOR.read(path, trust=True)
    with pytest.raises(InvalidArgument, match="external data"):
        FLAVOR.save(affine_model(external=True), tmp_path, trust=True)


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_files(tmp_path: Path, damage: str) -> None:
    raw = affine_model().SerializeToString()
    path = tmp_path / "bad.onnx"
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"\xff\x00junk" * 30)
    with pytest.raises(InvalidArgument, match="bad.onnx"):
        FLAVOR.read(path, trust=False)


def test_invalid_graph_is_refused(tmp_path: Path) -> None:
    model = affine_model()
    model.graph.node[0].input[1] = "missing"
    with pytest.raises(InvalidArgument, match="not a valid ONNX model"):
        FLAVOR.save(model, tmp_path, trust=False)


def test_wrong_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="onnx.ModelProto"):
        FLAVOR.save(3, tmp_path, trust=False)


def test_multi_input_model_needs_named_inputs() -> None:
    runtime = OnnxRuntime(columnar_model().SerializeToString(), {})
    with pytest.raises(InvalidArgument, match="named inputs"):
        runtime.predict(np.zeros((1, 2)))
    out = runtime.predict({"a": np.ones((2, 1)), "b": np.ones((2, 1), dtype=np.int64)})
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], np.full((2, 1), 2.0))


def test_mapping_to_unknown_input_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown ONNX inputs"):
        OnnxRuntime(columnar_model().SerializeToString(), {"columns": [["a", "nope"]]})
