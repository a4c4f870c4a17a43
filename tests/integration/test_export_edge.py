"""`export --target edge`: int8 dynamic quantization of an MLP with its parity measured and
checked here independently, tree ensembles exported fp32 with the reason, and every refusal
(accuracy destroyed, no rows to measure on, no ONNX form, existing output) with its message."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument
from shipyard.packaging.edge import EdgeOptions, Quantize, export_edge
from shipyard.packaging.load import load_version
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry


def _data(rows: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 16)).astype(np.float32)
    X[:, 15] = 0.0  # a feature that is always zero (see _sabotaged)
    y = (X[:, :4].sum(axis=1) + 0.5 * X[:, 4] * X[:, 5] > 0).astype(int)
    return X, y


def _mlp(X: np.ndarray, y: np.ndarray) -> MLPClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier((64, 32), max_iter=200, random_state=0).fit(X, y)


def _sabotaged(X: np.ndarray, y: np.ndarray) -> MLPClassifier:
    """Same answers in fp32, but one huge weight on the always-zero feature sets the int8
    scale so coarse that every other first-layer weight rounds to zero."""
    model = _mlp(X, y)
    model.coefs_[0][15, :] = 1000.0
    return model


@pytest.fixture
def mlp_rows(registry: Registry) -> np.ndarray:
    X, y = _data()
    register_model(
        registry, _mlp(X, y), Registration("mlp", sample_input=X[:100], reference_data=X[:500])
    )
    return X


def test_mlp_quantized_int8_with_parity(
    registry: Registry, mlp_rows: np.ndarray, tmp_path: Path
) -> None:
    report = export_edge(registry, "mlp", tmp_path / "edge")
    on_disk = json.loads((tmp_path / "edge" / "edge.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report["precision"] == "int8" and report["quantization"]["applied"]
    assert "MatMul" in report["quantization"]["reason"]
    assert report["bytes"]["exported"] < 0.6 * report["bytes"]["fp32"]
    parity = report["parity_vs_fp32"]
    assert parity["rows"] == 500 and parity["measure"] == "labels equal"
    assert parity["agreement"] >= 0.99 and 0 < parity["mean_abs_diff"]["predict_proba"] < 0.02
    assert parity["max_abs_diff"]["predict_proba"] >= parity["mean_abs_diff"]["predict_proba"]
    assert set(report["single_row_latency_us"]) == {"fp32", "int8"}
    assert report["fp32_vs_native"]["status"] == "kept"

    # As a device would: plain onnxruntime on the file, names from the manifest, fresh rows.
    session = ort.InferenceSession(str(tmp_path / "edge" / "model.onnx"))
    (input_spec,) = report["inputs"]
    assert input_spec["shape"][1] == 16 and input_spec["elem_type"] == 1  # FLOAT
    label = report["runtime_meta"]["outputs"]
    assert {o["name"] for o in report["outputs"]} == set(label)
    fresh, _ = _data(800, seed=7)
    (labels,) = session.run(["label"], {input_spec["name"]: fresh})
    native = load_version(registry, "mlp", prefer_compiled=False).infer(fresh)["predict"]
    assert np.mean(labels.ravel() == native) >= 0.98


def test_tree_ensemble_stays_fp32(registry: Registry, tmp_path: Path) -> None:
    X, y = _data(300)
    forest = RandomForestClassifier(10, max_depth=5, random_state=0).fit(X, y)
    version = register_model(registry, forest, Registration("forest", sample_input=X[:50]))
    report = export_edge(registry, "forest", tmp_path / "edge", options=EdgeOptions(sample=X))
    assert report["precision"] == "fp32" and not report["quantization"]["applied"]
    assert "tree ensembles" in report["quantization"]["reason"]
    compiled = registry.artifact_paths(version)["compiled/model.onnx"].read_bytes()
    assert (tmp_path / "edge" / "model.onnx").read_bytes() == compiled
    assert report["parity_vs_fp32"] is None and set(report["single_row_latency_us"]) == {"fp32"}


def test_destroyed_accuracy_is_refused_with_the_measure(registry: Registry, tmp_path: Path) -> None:
    X, y = _data()
    register_model(registry, _sabotaged(X, y), Registration("mlp", sample_input=X[:100]))
    fp32 = load_version(registry, "mlp").infer(X[:200])["predict"]
    native = load_version(registry, "mlp", prefer_compiled=False).infer(X[:200])["predict"]
    assert np.array_equal(fp32, native)  # the sabotage changes nothing in fp32
    with pytest.raises(
        FailedPrecondition, match=r"agrees with the fp32 model on \d+\.\d\d% of 400"
    ) as e:
        export_edge(registry, "mlp", tmp_path / "edge", options=EdgeOptions(sample=X[:400]))
    assert "under --min-agreement 99.00%" in str(e.value)
    assert not (tmp_path / "edge").exists() and list(tmp_path.glob(".edge*")) == []

    forced = EdgeOptions(sample=X[:400], min_agreement=0.0)
    report = export_edge(registry, "mlp", tmp_path / "edge", options=forced)
    assert report["precision"] == "int8" and report["parity_vs_fp32"]["agreement"] < 0.9
    plain = export_edge(
        registry, "mlp", tmp_path / "fp32", options=EdgeOptions(Quantize.none, sample=X[:400])
    )
    assert plain["precision"] == "fp32" and "not requested" in plain["quantization"]["reason"]


def test_refusals(registry: Registry, mlp_rows: np.ndarray, tmp_path: Path) -> None:
    X, y = _data(200)
    register_model(registry, _mlp(X, y), Registration("bare", sample_input=X[:50]))
    with pytest.raises(FailedPrecondition, match="needs rows to measure agreement"):
        export_edge(registry, "bare", tmp_path / "a")
    register_model(registry, _mlp(X, y), Registration("native", sample_input=X[:50], compile=False))
    with pytest.raises(FailedPrecondition, match="has no ONNX form"):
        export_edge(registry, "native", tmp_path / "a", options=EdgeOptions(sample=X))
    with pytest.raises(InvalidArgument, match="must be in"):
        export_edge(registry, "mlp", tmp_path / "a", options=EdgeOptions(min_agreement=1.5))
    assert not (tmp_path / "a").exists()

    export_edge(registry, "mlp", tmp_path / "edge")
    with pytest.raises(Conflict, match="already exists"):
        export_edge(registry, "mlp", tmp_path / "edge")
    export_edge(registry, "mlp", tmp_path / "edge", overwrite=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "keep.txt").write_text("keep")
    with pytest.raises(FailedPrecondition, match="without edge.json"):
        export_edge(registry, "mlp", tmp_path / "work", overwrite=True)
    assert (tmp_path / "work" / "keep.txt").read_text() == "keep"


def test_cli_edge(tmp_path: Path, database_url: str) -> None:
    from shipyard.app.settings import Settings
    from shipyard.client import Registry as Client

    env = {"SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_DATABASE_URL": database_url}
    X, y = _data()
    with Client(settings=Settings(home=tmp_path / "home", database_url=database_url)) as client:
        client.register(_mlp(X, y), "mlp", sample_input=X[:100])
        client.register(_sabotaged(X, y), "bad", sample_input=X[:100])
    np.save(tmp_path / "rows.npy", X[:300])
    base = ["export", "--target", "edge", "--sample", str(tmp_path / "rows.npy")]

    result = CliRunner().invoke(app, [*base, "mlp", "-o", str(tmp_path / "e")], env=env)
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stdout.split())  # rich wraps at the terminal width
    assert "int8" in said and "agreement with fp32" in said and "(labels equal)" in said
    assert f"python {tmp_path / 'e' / 'edge_runner.py'} {tmp_path / 'e'} ROWS.npy" in said
    result = CliRunner().invoke(
        app, [*base, "mlp", "-o", str(tmp_path / "s"), "--quantize", "static"], env=env
    )
    assert result.exit_code == 0, result.stderr
    assert (
        json.loads((tmp_path / "s" / "edge.json").read_text())["quantization"]["method"] == "static"
    )
    result = CliRunner().invoke(
        app, [*base, "mlp", "-o", str(tmp_path / "x"), "--agreement", "argmax"], env=env
    )
    assert result.exit_code == 3 and "argmax needs class scores" in " ".join(result.stderr.split())
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(app, [*base, "bad", "-o", str(tmp_path / "b")], env=env)
    assert result.exit_code == 6 and "under --min-agreement" in " ".join(result.stderr.split())
    result = CliRunner().invoke(
        app, [*base, "bad", "-o", str(tmp_path / "b"), "--min-agreement", "2"], env=env
    )
    assert result.exit_code == 2  # typer's range check
    result = CliRunner().invoke(
        app, [*base, "mlp", "-o", str(tmp_path / "c"), "--quantize", "none"], env=env
    )
    assert result.exit_code == 0 and "not requested" in " ".join(result.stdout.split())
