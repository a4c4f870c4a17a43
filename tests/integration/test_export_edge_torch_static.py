"""`export --target edge` beyond dynamic int8: static (calibrated) quantization, torch models
converted to ONNX with their parity checked against the TorchScript module, and the device
runner shipped with the export, run here with every shipyard-side package blocked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

import shipyard.edge
from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.edge import EdgeModel
from shipyard.packaging.edge import Agreement, EdgeOptions, Quantize, compare, export_edge
from shipyard.packaging.load import load_version
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry
from shipyard.runtimes.torch import quiet_jit, script_module

# Packages a device does not have: the runner must not import any of them.
BLOCKED = ("shipyard", "pandas", "pyarrow", "onnx", "sklearn", "scipy", "torch", "sqlalchemy")


def _data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 12)).astype(np.float32)
    return X, (X[:, :3].sum(axis=1) - X[:, 3] * X[:, 4] > 0).astype(np.int64)


def _torch_classifier(X: np.ndarray, y: np.ndarray) -> torch.jit.ScriptModule:
    """A trained 12-32-16-2 MLP returning class scores (logits)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 2),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), labels).backward()
        optimizer.step()
    return script_module(net.eval(), X[:4])


@pytest.fixture
def torch_rows(registry: Registry) -> np.ndarray:
    X, y = _data(1200)
    module = _torch_classifier(X, y)
    register_model(
        registry, module, Registration("tnet", sample_input=X[:50], reference_data=X[:600])
    )
    return X


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_static_quantization_calibrates_on_reference_rows(
    registry: Registry, tmp_path: Path
) -> None:
    X, y = _data(1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier((128, 64), max_iter=200, random_state=0).fit(X, y)
    register_model(registry, mlp, Registration("mlp", sample_input=X[:100], reference_data=X[:700]))
    report = export_edge(registry, "mlp", tmp_path / "s", options=EdgeOptions(Quantize.static))
    quantization = report["quantization"]
    assert report["precision"] == "int8" and quantization["method"] == "static"
    assert (
        quantization["calibration_rows"] == 700 and "calibrated (MinMax)" in quantization["reason"]
    )
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(tmp_path / "s" / "model.onnx")
    assert report["bytes"]["exported"] < 0.8 * report["bytes"]["fp32"]
    parity = report["parity_vs_fp32"]
    assert (
        parity["rows"] == 700
        and parity["measure"] == "labels equal"
        and parity["agreement"] >= 0.99
    )
    # Only the model, its report and the runner: calibration's scratch files stay elsewhere.
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "edge.json",
        "edge_runner.py",
        "model.onnx",
    ]

    fresh, _ = _data(400, seed=3)
    labels = EdgeModel.load(tmp_path / "s").predict(fresh)["predict"]
    native = load_version(registry, "mlp", prefer_compiled=False).infer(fresh)["predict"]
    assert np.mean(labels == native) >= 0.97


def test_torch_model_converted_with_parity(
    registry: Registry, torch_rows: np.ndarray, tmp_path: Path
) -> None:
    plain = export_edge(registry, "tnet", tmp_path / "fp32", options=EdgeOptions(Quantize.none))
    assert plain["precision"] == "fp32" and plain["flavor"] == "torch"
    conversion = plain["fp32_vs_native"]
    assert conversion["status"] == "kept" and conversion["converter"].startswith("torch.onnx")
    assert conversion["rows"] == 600 and conversion["max_abs_diff"] < 1e-4
    assert plain["outputs"][0]["name"] == "predict" and plain["inputs"][0]["shape"][1] == 12
    assert not (tmp_path / "fp32" / "fp32.onnx").exists()

    fresh, _ = _data(300, seed=5)
    scores = EdgeModel.load(tmp_path / "fp32").predict(fresh)["predict"]
    native = load_version(registry, "tnet").infer(fresh)["predict"]
    np.testing.assert_allclose(scores, native, rtol=1e-4, atol=1e-5)

    # Linear layers become Gemm ops, which dynamic quantization does not cover: say so.
    dynamic = export_edge(registry, "tnet", tmp_path / "dyn")
    assert (
        dynamic["precision"] == "fp32"
        and "use --quantize static" in dynamic["quantization"]["reason"]
    )

    static = export_edge(registry, "tnet", tmp_path / "int8", options=EdgeOptions(Quantize.static))
    assert static["precision"] == "int8" and "Gemm" in static["quantization"]["reason"]
    parity = static["parity_vs_fp32"]
    assert parity["measure"] == "top class (argmax) equal" and parity["agreement"] >= 0.99
    assert parity["mean_abs_diff"]["predict"] > 0  # the scores did change, the classes did not


def test_torch_refusals(registry: Registry, tmp_path: Path) -> None:
    X, y = _data(300)
    register_model(registry, _torch_classifier(X, y), Registration("bare", sample_input=X[:20]))
    with pytest.raises(FailedPrecondition, match="needs rows to trace it"):
        export_edge(registry, "bare", tmp_path / "a", options=EdgeOptions(Quantize.none))
    strict = EdgeOptions(Quantize.static, sample=X, agreement=Agreement.values, min_agreement=1.0)
    with pytest.raises(
        FailedPrecondition, match=r"values within rtol .* under --min-agreement 100"
    ):
        export_edge(registry, "bare", tmp_path / "a", options=strict)
    assert not (tmp_path / "a").exists() and list(tmp_path.glob(".a.*")) == []


def test_agreement_rules() -> None:
    scores = np.array([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5001], [0.2, 0.8]], np.float32)
    # Rows 1 and 4 move but keep their class; row 3 moves within tolerance but flips.
    nudged = scores + np.array([[0.05, 0], [0, 0], [0.001, 0], [0.1, 0]], np.float32)
    argmax = compare({"predict": scores}, {"predict": nudged})
    assert argmax.measure == "top class (argmax) equal" and argmax.agreement == 0.75
    values = compare({"predict": scores}, {"predict": nudged}, Agreement.values)
    assert values.measure.startswith("values within") and values.agreement == 0.5
    with pytest.raises(InvalidArgument, match="argmax needs class scores"):
        compare({"predict": scores[:, 0]}, {"predict": nudged[:, 0]}, Agreement.argmax)


def _run_blocked(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the export's edge_runner.py as a device would, with shipyard's stack unimportable."""
    blocker = textwrap.dedent(f"""
        import runpy, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(f"{{name}} is not installed on this device")
        sys.meta_path.insert(0, Block())
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """)
    return subprocess.run(
        [sys.executable, "-I", "-c", blocker, *args], capture_output=True, text=True, timeout=60
    )


def test_device_runner_needs_only_numpy_and_onnxruntime(
    registry: Registry, torch_rows: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "edge"
    export_edge(registry, "tnet", out, options=EdgeOptions(Quantize.none))
    runner = out / "edge_runner.py"
    assert runner.read_text() == Path(shipyard.edge.__file__).read_text()
    fresh, _ = _data(5, seed=9)
    np.save(tmp_path / "rows.npy", fresh)

    done = _run_blocked(str(runner), str(out), str(tmp_path / "rows.npy"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    native = load_version(registry, "tnet").infer(fresh)["predict"]
    np.testing.assert_allclose([line["predict"] for line in lines], native, rtol=1e-4, atol=1e-5)

    (tmp_path / "rows.json").write_text(json.dumps(fresh[:2].tolist()))
    assert (
        len(_run_blocked(str(runner), str(out), str(tmp_path / "rows.json")).stdout.splitlines())
        == 2
    )

    # A changed model file is refused, and the original bytes are left as they were.
    model = out / "model.onnx"
    original = model.read_bytes()
    model.write_bytes(original[:-8] + b"\0" * 8)
    refused = _run_blocked(str(runner), str(out), str(tmp_path / "rows.npy"))
    assert refused.returncode == 1 and "does not match edge.json" in refused.stderr
    with pytest.raises(ValueError, match="refusing to load it"):
        EdgeModel.load(out)
    model.write_bytes(original)
    assert EdgeModel.load(out).predict(fresh)["predict"].shape == (5, 2)

    # The blocker itself works: the runner's imports are what keeps it off these packages.
    probe = tmp_path / "probe.py"
    probe.write_text("import pandas\n")
    assert "pandas is not installed" in _run_blocked(str(probe)).stderr


class _Named(torch.nn.Module):
    """Returns its outputs by name: TorchRuntime serves that, ONNX export cannot name them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"scores": self.linear(x)}


def test_a_torch_model_returning_a_dict_is_refused(registry: Registry, tmp_path: Path) -> None:
    X, _ = _data(60)
    with quiet_jit():
        module = torch.jit.script(_Named().eval())
    register_model(registry, module, Registration("named", sample_input=X[:10]))
    with pytest.raises(FailedPrecondition, match="returning a dict cannot be exported to ONNX"):
        export_edge(registry, "named", tmp_path / "e", options=EdgeOptions(sample=X))
    assert not (tmp_path / "e").exists() and list(tmp_path.glob(".e.*")) == []
