"""Run an edge export on a device: numpy and onnxruntime, nothing else.

    from shipyard.edge import EdgeModel     # pip install shipyard[edge]
    model = EdgeModel.load("edge/")         # checks model.onnx against edge.json's sha256
    outputs = model.predict(rows)           # {"predict": ..., "predict_proba": ...}

    python -m shipyard.edge edge/ rows.npy            # the outputs as JSON lines
    python edge/edge_runner.py edge/ rows.npy         # the same file, shipped by the export:
                                                      # `pip install numpy onnxruntime` is all

This module imports nothing else from shipyard (a test pins it), so `shipyard export --target
edge` copies it next to the model as one file. `OnnxModel` is also the core of the serving
runtime (runtimes/onnx.py): servers and devices read the output mapping the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

MODEL_FILE = "model.onnx"
REPORT_FILE = "edge.json"
RUNNER_FILE = "edge_runner.py"
PRIMARY_OUTPUT = "predict"

ELEMENT_DTYPES: dict[str, Any] = {
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


def new_session(raw: bytes, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU with `threads` intra-op threads, graph optimised."""
    import onnxruntime as ort  # heavy: imported when a model is loaded

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # shape warnings of converted tree models are noise
    return ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An ONNX session plus shipyard's flavor meta, mapping inputs and outputs.

    Meta may carry
    - "columns": [[column, onnx_input], ...] — one ONNX input per table column, fed (n, 1);
    - "outputs": {onnx_output: our_name} — e.g. label → predict, probabilities → predict_proba;
    - "flatten": [our_name, ...] — (n, 1) outputs returned as (n,), like the native model;
    - "dtypes": {our_name: numpy dtype str} — labels cast back to the native dtype.
    Without "outputs", outputs keep their ONNX names and the first one is also `predict`.
    """

    error: ClassVar[type[Exception]] = ValueError

    def __init__(self, session: Any, meta: Mapping[str, Any]) -> None:
        self._session = session
        inputs = session.get_inputs()
        types = {item.name: ELEMENT_DTYPES.get(item.type, np.float32) for item in inputs}
        unknown = sorted({str(name) for _, name in meta.get("columns", [])} - set(types))
        if unknown:
            raise self.error(f"the column mapping names unknown ONNX inputs: {unknown}")
        self._columns = [
            (str(col), str(name), types[name]) for col, name in meta.get("columns", [])
        ]
        self._inputs = [(item.name, types[item.name]) for item in inputs]
        self._single = self._inputs[0] if len(self._inputs) == 1 else None
        onnx_names = [item.name for item in session.get_outputs()]
        mapping: dict[str, str] = dict(meta.get("outputs") or {})
        first = []
        if not mapping:  # keep ONNX names; the first is also exposed as predict
            mapping = {name: name for name in onnx_names}
            first = [(PRIMARY_OUTPUT, 0)] if PRIMARY_OUTPUT not in mapping else []
        self._run_names = list(mapping)
        flatten = set(meta.get("flatten", ()))
        dtypes = meta.get("dtypes", {})
        pairs = [(ours, index) for index, ours in enumerate(mapping.values())] + first
        self._post = [
            (ours, index, ours in flatten, np.dtype(dtypes[ours]) if ours in dtypes else None)
            for ours, index in pairs
        ]

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Named output arrays for an ndarray, a table (DataFrame) or a mapping of arrays."""
        values = self._session.run(self._run_names, self.feeds(inputs))
        outputs: dict[str, np.ndarray] = {}
        for name, index, flatten, dtype in self._post:
            value = values[index]
            if flatten:
                value = value.reshape(-1)
            outputs[name] = value if dtype is None else value.astype(dtype, copy=False)
        return outputs

    def feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        """The session's input arrays for `inputs`, cast to each input's element type."""
        if self._columns:
            return {
                name: np.asarray(inputs[col]).reshape(-1, 1).astype(dtype, copy=False)
                for col, name, dtype in self._columns
            }
        if self._single is not None and not isinstance(inputs, Mapping):
            name, dtype = self._single
            if not isinstance(inputs, np.ndarray):  # a DataFrame, or nested lists
                inputs = inputs.to_numpy() if hasattr(inputs, "to_numpy") else np.asarray(inputs)
            return {name: inputs.astype(dtype, copy=False)}
        if isinstance(inputs, Mapping):
            return {
                name: np.asarray(inputs[name]).astype(dtype, copy=False)
                for name, dtype in self._inputs
            }
        raise self.error(
            f"this ONNX model takes {len(self._inputs)} named inputs; send them by name"
        )


class EdgeModel(OnnxModel):
    """An exported edge directory (model.onnx + edge.json), loaded for prediction."""

    def __init__(self, session: Any, report: Mapping[str, Any]) -> None:
        super().__init__(session, report.get("runtime_meta") or {})
        self.report = dict(report)

    @classmethod
    def load(cls, directory: str | Path, *, threads: int = 1) -> EdgeModel:
        """Load DIR/model.onnx, refusing a file whose sha256 is not the one edge.json names."""
        directory = Path(directory)
        report = json.loads((directory / REPORT_FILE).read_text())
        raw = (directory / report["model"]["file"]).read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != report["model"]["sha256"]:
            raise ValueError(
                f"{directory / report['model']['file']} does not match {REPORT_FILE} "
                f"(sha256 {digest}, expected {report['model']['sha256']}): refusing to load it"
            )
        return cls(new_session(raw, threads), report)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """Input names, ONNX element types and shapes, as edge.json lists them."""
        return list(self.report.get("inputs", []))


def _read_rows(path: Path) -> Any:
    """An .npy array, or a .json list of rows / object of named columns."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        return {name: np.asarray(values) for name, values in data.items()}
    return np.asarray(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge_runner", description="Predict with a shipyard edge export (model.onnx)."
    )
    parser.add_argument("directory", type=Path, help="the export's directory (edge.json)")
    parser.add_argument("rows", type=Path, help="rows: .npy, or .json (list of rows or columns)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    try:
        model = EdgeModel.load(args.directory, threads=args.threads)
        outputs = model.predict(_read_rows(args.rows))
    except Exception as exc:  # a CLI: any failure (I/O, JSON, onnxruntime) is one clear line
        print(f"edge_runner: {exc}", file=sys.stderr)
        return 1
    rows = len(next(iter(outputs.values()))) if outputs else 0
    for index in range(rows):
        print(json.dumps({name: values[index].tolist() for name, values in outputs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
