"""ONNX flavor: the serving fast path (onnxruntime, one thread, everything precomputed).

Flavor meta may carry
- "columns": [[column, onnx_input], ...] — columnar models: one ONNX input per DataFrame
  column, fed as an (n, 1) array of the input's element type;
- "outputs": {onnx_output: our_name} — e.g. label → predict, probabilities → predict_proba;
- "flatten": [our_name, ...] — (n, 1) outputs returned as (n,), like the native model;
- "dtypes": {our_name: numpy dtype str} — labels cast back to the native dtype (ONNX strings
  come back as object arrays).
Without "outputs", outputs keep their ONNX names and the first one is also `predict`.
The mapping lives in `shipyard.edge.OnnxModel`, which devices run without the rest of shipyard.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import edge
from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import Saved, defined_in, unreadable

if TYPE_CHECKING:
    import onnx

MODEL_FILE = "model.onnx"


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
    try:
        return edge.new_session(raw)
    except Exception as exc:  # onnxruntime raises its own error classes
        raise InvalidArgument(f"onnxruntime cannot load the model: {exc}") from None


class OnnxRuntime(edge.OnnxModel):
    """The serving fast path: one intra-op thread, input and output mapping precomputed."""

    flavor = "onnx"
    error = InvalidArgument

    def __init__(self, raw: bytes, meta: Mapping[str, Any]) -> None:
        super().__init__(new_session(raw), meta)


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
