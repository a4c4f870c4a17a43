"""Bundles: export → verify → open round trips, tampering refused, signatures, the CLI."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.core.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from shipyard.packaging.bundle import export_bundle, open_bundle, verify_bundle
from shipyard.packaging.load import load_version
from shipyard.packaging.register import Registration, register_model
from shipyard.packaging.signing import generate_keypair
from shipyard.registry.service import Registry
from shipyard.runtimes.flavors import get_flavor
from shipyard.storage.blobs import LocalBlobStore


def _train() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return LogisticRegression().fit(X, y), X


@pytest.fixture
def registered(registry: Registry) -> np.ndarray:
    model, X = _train()
    register_model(
        registry,
        model,
        Registration("fraud", sample_input=X[:20], metrics={"auc": 0.9}, tags={"team": "risk"}),
    )
    return X


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "sign.pem", tmp_path / "keys" / "sign.pub"
    private.parent.mkdir()
    generate_keypair(private, public)
    return private, public


def test_round_trip_directory(registry: Registry, registered: np.ndarray, tmp_path: Path) -> None:
    out = export_bundle(registry, "fraud", tmp_path / "out" / "fraud-1")
    assert {p.name for p in out.iterdir()} == {
        "model",
        "version.json",
        "requirements.txt",
        "MANIFEST.json",
    }
    version = registry.resolve("fraud:1")
    assert {f"model/{name}" for name in version.artifacts} <= set(
        verify_bundle(out).files
    ) and "model/compiled/model.onnx" in verify_bundle(out).files
    record = json.loads((out / "version.json").read_text())
    assert (record["name"], record["version"], record["flavor"]) == ("fraud", 1, "sklearn")
    assert record["compiled"]["status"] == "kept" and record["metrics"] == {"auc": 0.9}
    requirements = (out / "requirements.txt").read_text()
    assert "shipyard==" in requirements and "scikit-learn==" in requirements
    assert "onnxruntime==" in requirements and "xgboost" not in requirements

    info, paths = open_bundle(out)
    assert info.ref == "fraud:1" and not info.signed
    # The bundle's files load like the registry's: same flavor code, same predictions.
    runtime = get_flavor("onnx").load(
        {"model.onnx": paths["compiled/model.onnx"]}, info.record["flavor_meta"]["compiled"]
    )
    expected = load_version(registry, "fraud:1").infer(registered[:5])["predict"]
    assert np.array_equal(runtime.predict(registered[:5])["predict"], expected)


def test_tampered_extra_and_missing_files_are_named(
    registry: Registry, registered: np.ndarray, tmp_path: Path
) -> None:
    out = export_bundle(registry, "fraud:1", tmp_path / "b")
    onnx = out / "model" / "compiled" / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(InvalidArgument, match="model/compiled/model.onnx does not match"):
        verify_bundle(out)
    onnx.write_bytes(original)
    (out / "model" / "evil.py").write_text("print('hi')")
    with pytest.raises(InvalidArgument, match=r"model/evil\.py is not in MANIFEST"):
        verify_bundle(out)
    (out / "model" / "evil.py").unlink()
    (out / "requirements.txt").unlink()
    with pytest.raises(InvalidArgument, match="requirements.txt is missing"):
        verify_bundle(out)
    (out / "MANIFEST.json").unlink()
    with pytest.raises(InvalidArgument, match="MANIFEST.json is missing"):
        verify_bundle(out)


def test_signature_ok_wrong_key_and_changed_manifest(
    registry: Registry, registered: np.ndarray, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    out = export_bundle(registry, "fraud", tmp_path / "signed.tar.gz", sign_key=private)
    info = verify_bundle(out, public_key=public)
    assert info.signed and info.signature_verified
    other_private, other_public = tmp_path / "other.pem", tmp_path / "other.pub"
    generate_keypair(other_private, other_public)
    with pytest.raises(FailedPrecondition, match="does not match the public key other.pub"):
        verify_bundle(out, public_key=other_public)

    unsigned = export_bundle(registry, "fraud", tmp_path / "unsigned")
    with pytest.raises(FailedPrecondition, match="is not signed"):
        verify_bundle(unsigned, public_key=public)
    with pytest.raises(InvalidArgument, match="not an unencrypted PEM private key"):
        export_bundle(registry, "fraud", tmp_path / "x", sign_key=public)
    assert not (tmp_path / "x").exists()

    directory = export_bundle(registry, "fraud", tmp_path / "signed-dir", sign_key=private)
    manifest = directory / "MANIFEST.json"
    manifest.write_text(manifest.read_text().replace('"format"', '"format" ', 1))
    with pytest.raises(FailedPrecondition, match="does not match"):
        verify_bundle(directory, public_key=public)


def test_archive_round_trip_and_open(
    registry: Registry, registered: np.ndarray, tmp_path: Path
) -> None:
    archive = export_bundle(registry, "fraud", tmp_path / "fraud.tar.gz")
    assert archive.is_file() and tarfile.is_tarfile(archive)
    info = verify_bundle(archive)
    assert info.path == archive and info.version == 1
    info, paths = open_bundle(archive, extract_to=tmp_path / "unpacked")
    assert paths["compiled/model.onnx"].is_relative_to(tmp_path / "unpacked")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refusals_failed_unknown_and_existing_output(
    registry: Registry, registered: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NotFound, match="model 'nope' not found"):
        export_bundle(registry, "nope", tmp_path / "a")
    with pytest.raises(NotFound, match="has no version 7"):
        export_bundle(registry, "fraud:7", tmp_path / "a")

    def broken(self: LocalBlobStore, path: Path) -> None:
        raise Unavailable("disk full")

    monkeypatch.setattr(LocalBlobStore, "put_file", broken)
    model, X = _train()
    with pytest.raises(Unavailable):
        register_model(registry, model, Registration("fraud", sample_input=X[:20]))
    monkeypatch.undo()
    with pytest.raises(FailedPrecondition, match="fraud:2 is FAILED"):
        export_bundle(registry, "fraud:2", tmp_path / "a")
    assert not (tmp_path / "a").exists()

    out = export_bundle(registry, "fraud", tmp_path / "b")
    with pytest.raises(Conflict, match="already exists"):
        export_bundle(registry, "fraud", out)
    assert export_bundle(registry, "fraud", out, overwrite=True) == out
    verify_bundle(out)

    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FailedPrecondition, match="not a bundle"):
        export_bundle(registry, "fraud", precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_export_verify_keygen(tmp_path: Path, database_url: str) -> None:
    env = {"SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_DATABASE_URL": database_url}
    model, X = _train()
    from shipyard.app.settings import Settings
    from shipyard.client import Registry as Client

    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Client(settings=settings) as client:
        client.register(model, "fraud", sample_input=X[:20])

    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    assert _run(env, "bundle", "keygen", str(private), str(public))[0] == 0
    assert _run(env, "bundle", "keygen", str(private), str(public))[0] == 5
    out = tmp_path / "bundle.tar.gz"
    code, stdout, stderr = _run(env, "export", "fraud", "-o", str(out), "--sign", str(private))
    assert code == 0, stderr
    code, stdout, stderr = _run(env, "bundle", "verify", str(out), "--verify", str(public))
    assert code == 0 and "signature verified" in stdout, stderr
    code, _, stderr = _run(env, "export", "fraud", "-o", str(out))
    assert code == 5 and "already exists" in stderr
    code, _, stderr = _run(env, "export", "ghost", "-o", str(tmp_path / "g"))
    assert code == 4 and "'ghost' not found" in stderr

    other_private, other_public = tmp_path / "o.pem", tmp_path / "o.pub"
    _run(env, "bundle", "keygen", str(other_private), str(other_public))
    code, _, stderr = _run(env, "bundle", "verify", str(out), "--verify", str(other_public))
    assert code == 6 and "does not match the public key" in stderr

    code, stdout, stderr = _run(
        env, "export", "fraud@production", "--target", "kubernetes", "-o", str(tmp_path / "k8s")
    )
    assert code == 0, stderr
    assert (tmp_path / "k8s" / "deployment.yaml").is_file()
    code, _, stderr = _run(
        env, "export", "fraud", "--target", "kserve", "-o", str(tmp_path / "ks"),
        "--canary-percent", "10",
    )  # fmt: skip
    assert code == 0 and (tmp_path / "ks" / "inferenceservice.yaml").is_file(), stderr


def test_repacked_links_and_hostile_archives(
    registry: Registry, registered: np.ndarray, tmp_path: Path
) -> None:
    out = export_bundle(registry, "fraud", tmp_path / "b")
    repacked = tmp_path / "repacked.tar.gz"
    with tarfile.open(repacked, "w:gz") as tar:  # like `tar czf repacked.tar.gz -C b .`
        tar.add(out, arcname=".")
    assert verify_bundle(repacked).ref == "fraud:1"

    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        tar.add(out, arcname=".")
        link = tarfile.TarInfo("model/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(InvalidArgument, match="'model/passwd' is a link"):
        verify_bundle(hostile)
    with pytest.raises(InvalidArgument, match="is a link"):
        open_bundle(hostile)

    (out / "model" / "shadow").symlink_to("/etc/hostname")
    with pytest.raises(InvalidArgument, match="bundle file model/shadow is a link"):
        verify_bundle(out)
