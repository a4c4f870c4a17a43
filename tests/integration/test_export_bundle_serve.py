"""A bundle imported into a private registry (what `serve --bundle` serves from), and the
`serve --bundle` flags that are refused before anything starts."""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.core.errors import InvalidArgument
from shipyard.packaging.bundle import export_bundle
from shipyard.packaging.bundle_registry import import_bundle
from shipyard.packaging.load import load_version
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry


@pytest.fixture
def rows(registry: Registry) -> np.ndarray:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 5)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    for seed in (0, 1, 2):  # fraud:1..3; the bundle carries 3
        forest = RandomForestClassifier(5, max_depth=4, random_state=seed).fit(X, y)
        register_model(registry, forest, Registration("fraud", sample_input=X[:20]))
    return X


def test_directory_bundle_imports_with_its_number_and_predictions(
    registry: Registry, rows: np.ndarray, tmp_path: Path
) -> None:
    bundle = export_bundle(registry, "fraud:3", tmp_path / "bundle")
    imported = import_bundle(bundle, tmp_path / "private")
    assert imported.version.ref == "fraud:3" and imported.info.ref == "fraud:3"
    assert not (tmp_path / "private" / "bundle").exists()  # extraction dir removed
    with Registry.open(imported.database_url, imported.blob_location) as private:
        assert [v.version for v in private.list_versions("fraud")] == [3]
        served = load_version(private, "fraud")
        original = registry.resolve("fraud:3")
        assert served.version.signature == original.signature
        assert served.version.compiled == original.compiled and served.compiled
        assert served.version.artifacts == original.artifacts
        np.testing.assert_array_equal(
            served.infer(rows[:20])["predict"],
            load_version(registry, "fraud:3").infer(rows[:20])["predict"],
        )
    assert (bundle / "MANIFEST.json").is_file()  # the user's bundle is left as it was


def test_import_refusals(registry: Registry, rows: np.ndarray, tmp_path: Path) -> None:
    bundle = export_bundle(registry, "fraud:3", tmp_path / "b.tar.gz")
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    with pytest.raises(InvalidArgument, match="is not empty"):
        import_bundle(bundle, used)
    with pytest.raises(InvalidArgument, match="no bundle at"):
        import_bundle(tmp_path / "absent.tar.gz", tmp_path / "p1")
    # A bundle re-manifested by hand (unsigned) is checked like any input.
    forged = export_bundle(registry, "fraud:3", tmp_path / "forged")
    record = json.loads((forged / "version.json").read_text())
    record["version"] = 0
    (forged / "version.json").write_text(json.dumps(record))
    manifest = json.loads((forged / "MANIFEST.json").read_text())
    data = (forged / "version.json").read_bytes()
    manifest["files"]["version.json"] = {"sha256": sha256(data).hexdigest(), "size": len(data)}
    (forged / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidArgument, match="has version 0; must be >= 1"):
        import_bundle(forged, tmp_path / "p0")
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(InvalidArgument, match="not a readable .tar.gz"):
        import_bundle(tmp_path / "junk.tar.gz", tmp_path / "p2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fraud", "--bundle", "{bundle}"], "either models to serve or --bundle, not both"),
        (["--bundle", "{bundle}", "--auth"], "a --bundle server has none"),
        (["fraud", "--public-key", "{bundle}"], "--public-key applies to --bundle only"),
        (["--bundle", "{tmp}/missing"], "no bundle at"),
        ([], "give at least one model to serve"),
    ],
)
def test_serve_bundle_cli_misuse(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bundle").mkdir()
    filled = [a.format(bundle=tmp_path / "bundle", tmp=tmp_path) for a in args]
    env = {"SHIPYARD_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(app, ["serve", *filled, "--http-port", "0"], env=env)
    assert result.exit_code == 3, result.output
    assert message in result.stderr
    assert not (tmp_path / "home").exists()
