"""ONNX flavor: the serving fast path (onnxruntime, one thread, everything precomputed).

Flavor meta may carry
- "columns": [[column, onnx_input], ...] — columnar models: one ONNX input per DataFrame
  column, fed as an (n, 1) array of the input's element type;
- "outputs": {onnx_output: our_name} — e.g. label → predict, probabilities → predict_proba;
- "flatten": [our_name, ...] — (n, 1) outputs returned as (n,), like the native model;
- "dtypes": {our_name: numpy dtype str} — labels cast back to the native dtype (ONNX strings
  come back as object arrays).
Without "outputs", outputs keep their ONNX names and the first one is also `predict`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import (
    PRIMARY_OUTPUT,
    ModelInput,
    Outputs,
    Saved,
    defined_in,
    unreadable,
)

if TYPE_CHECKING:
    import onnx

MODEL_FILE = "model.onnx"

_ELEMENT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
    "tensor(float16)": np.float16,
}


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors


def check_model(model: onnx.ModelProto, name: str = MODEL_FILE) -> None:
    """Refuse external data (it names files to open: path traversal) and invalid graphs."""
    import onnx  # lazily: keeps `import shipyard` fast

    for graph in _graphs(model.graph):
        for tensor in _tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
                raise InvalidArgument(
                    f"{name}: tensor {tensor.name!r} refers to external data; "
                    "only self-contained ONNX models are accepted",
                    details={"tensor": tensor.name},
                )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError, or protobuf errors
        raise InvalidArgument(f"{name} is not a valid ONNX model: {exc}") from None


def parse(raw: bytes, name: str = MODEL_FILE) -> onnx.ModelProto:
    import onnx

    model = onnx.ModelProto()
    try:
        model.ParseFromString(raw)
    except Exception as exc:  # protobuf DecodeError
        raise unreadable(Path(name), "ONNX", exc) from None
    if not model.graph.node and not model.graph.output:
        raise InvalidArgument(f"{name} is not an ONNX model (empty graph)")
    check_model(model, name)
    return model


def new_session(raw: bytes) -> Any:
    import onnxruntime as ort  # a core dependency, but heavy to import

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # shape warnings of converted tree models are noise
    try:
        return ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own error classes
        raise InvalidArgument(f"onnxruntime cannot load the model: {exc}") from None


class OnnxRuntime:
    flavor = "onnx"

    def __init__(self, raw: bytes, meta: Mapping[str, Any]) -> None:
        self._session = new_session(raw)
        inputs = self._session.get_inputs()
        types = {item.name: _ELEMENT_DTYPES.get(item.type, np.float32) for item in inputs}
        unknown = sorted({str(name) for _, name in meta.get("columns", [])} - set(types))
        if unknown:
            raise InvalidArgument(f"the column mapping names unknown ONNX inputs: {unknown}")
        self._columns = [
            (str(col), str(name), types[name]) for col, name in meta.get("columns", [])
        ]
        self._inputs = [(item.name, types[item.name]) for item in inputs]
        self._single = self._inputs[0] if len(self._inputs) == 1 else None
        onnx_names = [item.name for item in self._session.get_outputs()]
        mapping: dict[str, str] = dict(meta.get("outputs") or {})
        if not mapping:  # keep ONNX names; the first is also exposed as predict
            mapping = {name: name for name in onnx_names}
            first = [(PRIMARY_OUTPUT, 0)] if PRIMARY_OUTPUT not in mapping else []
        else:
            first = []
        self._run_names = list(mapping)
        flatten = set(meta.get("flatten", ()))
        dtypes = meta.get("dtypes", {})
        pairs = [(ours, index) for index, ours in enumerate(mapping.values())] + first
        self._post = [
            (ours, index, ours in flatten, np.dtype(dtypes[ours]) if ours in dtypes else None)
            for ours, index in pairs
        ]

    def predict(self, inputs: ModelInput) -> Outputs:
        values = self._session.run(self._run_names, self._feeds(inputs))
        outputs: Outputs = {}
        for name, index, flatten, dtype in self._post:
            value = values[index]
            if flatten:
                value = value.reshape(-1)
            outputs[name] = value if dtype is None else value.astype(dtype, copy=False)
        return outputs

    def _feeds(self, inputs: ModelInput) -> dict[str, np.ndarray]:
        if self._columns:
            frame: Any = inputs
            return {
                name: np.asarray(frame[col]).reshape(-1, 1).astype(dtype, copy=False)
                for col, name, dtype in self._columns
            }
        if self._single is not None and isinstance(inputs, np.ndarray | pd.DataFrame):
            name, dtype = self._single
            array = inputs.to_numpy() if isinstance(inputs, pd.DataFrame) else inputs
            return {name: array.astype(dtype, copy=False)}
        if isinstance(inputs, Mapping):
            return {
                name: np.asarray(inputs[name]).astype(dtype, copy=False)
                for name, dtype in self._inputs
            }
        raise InvalidArgument(
            f"this ONNX model takes {len(self._inputs)} named inputs; send them by name"
        )


class OnnxFlavor:
    name = "onnx"

    def handles(self, model: object) -> bool:
        if isinstance(model, bytes | bytearray):
            try:
                parse(bytes(model))
            except InvalidArgument:
                return False
            return True
        return defined_in(model, "onnx") and type(model).__name__ == "ModelProto"

    def sniff(self, path: Path) -> bool:
        return path.suffix.lower() == ".onnx"

    def read(self, path: Path, *, trust: bool) -> object:
        return parse(path.read_bytes(), path.name)

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        if isinstance(model, bytes | bytearray):
            raw = bytes(model)
            parse(raw)
        elif self.handles(model):
            proto: Any = model
            check_model(proto)
            raw = proto.SerializeToString()
        else:
            raise InvalidArgument(
                f"expected an onnx.ModelProto or bytes, got {type(model).__name__}"
            )
        (directory / MODEL_FILE).write_bytes(raw)
        return Saved((MODEL_FILE,), {})

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> OnnxRuntime:
        return OnnxRuntime(files[MODEL_FILE].read_bytes(), meta)
