"""Registry semantics on SQLite and PostgreSQL: versions, aliases, resolve, ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from shipyard.core.lineage import DataFingerprint, Lineage
from shipyard.core.refs import ModelRef
from shipyard.registry.models import VersionSpec, VersionStatus
from shipyard.registry.service import Registry
from shipyard.storage.blobs import LocalBlobStore

SPEC = VersionSpec(flavor="onnx")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes")
    return path


def _register(registry: Registry, path: Path, name: str = "fraud") -> int:
    return registry.register_version(name, {"model.onnx": path}, SPEC).version


def test_register_stores_everything_and_round_trips(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("a b c")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x01" * 100)
    lineage = Lineage(data=DataFingerprint("ab" * 32, 10, {"x": "float64"}), code_version="abc123")
    spec = VersionSpec(
        flavor="sklearn",
        signature={"inputs": [{"name": "x", "dtype": "float64", "shape": [-1, 3]}]},
        flavor_meta={"format": "skops"},
        compiled={"artifact": "model.onnx", "max_abs_diff": 1e-7},
        description="first",
        tags={"team": "risk"},
        params={"n_estimators": 20},
        metrics={"auc": 0.91},
        lineage=lineage,
    )
    files = {"model.onnx": tmp_path / "m.onnx", "tokenizer/vocab.txt": tmp_path / "vocab.txt"}
    version = registry.register_version("fraud", files, spec, reason="initial")
    assert (version.name, version.version, version.status) == ("fraud", 1, VersionStatus.READY)
    assert version.creator == "tester" and version.created_at.tzinfo is not None
    assert version.lineage == lineage and version.metrics == {"auc": 0.91}
    assert version.signature == spec.signature and version.compiled == spec.compiled
    assert sorted(version.artifacts) == ["model.onnx", "tokenizer/vocab.txt"]
    assert registry.get_version("fraud", 1) == version == registry.resolve("fraud")
    paths = registry.artifact_paths(version)
    assert paths["tokenizer/vocab.txt"].read_text() == "a b c"
    assert [(e.action, e.version, e.reason) for e in registry.history("fraud")] == [
        ("version.registered", 1, "initial"),
    ]


def test_versions_are_numbered_and_resolve_picks_latest_ready(
    registry: Registry, model_file: Path
) -> None:
    assert [_register(registry, model_file) for _ in range(3)] == [1, 2, 3]
    assert registry.resolve("fraud").version == 3
    assert registry.resolve(ModelRef("fraud", version=2)).version == 2
    assert registry.resolve("fraud:1").version == 1
    registry.archive_version("fraud", 3, reason="bad")
    assert registry.resolve("fraud").version == 2
    assert registry.resolve("fraud:3").archived
    assert registry.get_model("fraud").latest_version == 2
    assert [v.version for v in registry.list_versions("fraud")] == [1, 2, 3]


def test_resolve_errors_are_specific(registry: Registry, model_file: Path) -> None:
    with pytest.raises(NotFound, match="^model 'x' not found$"):
        registry.resolve("x")
    _register(registry, model_file)
    with pytest.raises(NotFound, match="^model 'fraud' has no version 9$"):
        registry.resolve("fraud:9")
    with pytest.raises(NotFound, match="^model 'fraud' has no alias 'y'$"):
        registry.resolve("fraud@y")
    with pytest.raises(InvalidArgument):
        registry.resolve("fraud:../etc")


def test_failed_registration_is_recorded_and_not_resolvable(
    registry: Registry, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(registry, model_file)

    def broken(self: LocalBlobStore, path: Path) -> None:
        raise Unavailable("disk full")

    monkeypatch.setattr(LocalBlobStore, "put_file", broken)
    with pytest.raises(Unavailable, match="disk full"):
        _register(registry, model_file)
    failed = registry.get_version("fraud", 2)
    assert failed.status is VersionStatus.FAILED and "disk full" in (failed.status_reason or "")
    with pytest.raises(FailedPrecondition, match="fraud:2 is FAILED .*disk full"):
        registry.resolve("fraud:2")
    assert registry.resolve("fraud").version == 1
    assert registry.list_versions("fraud", status=VersionStatus.FAILED) == [failed]
    assert registry.history("fraud")[-1].action == "version.failed"
    with pytest.raises(FailedPrecondition, match="not READY"):
        registry.set_alias("fraud", "production", 2)


@pytest.mark.parametrize("name", ["a/b", "..", "x..y", "bad\x00", "n" * 201, "", "-x"])
def test_bad_names_store_nothing(registry: Registry, model_file: Path, name: str) -> None:
    with pytest.raises(InvalidArgument):
        registry.register_version(name, {"model.onnx": model_file}, SPEC)
    assert registry.list_models(include_archived=True) == [] and registry.revision() == 0


@pytest.mark.parametrize(
    ("files", "spec"),
    [
        ({}, SPEC),
        ({"../x": "model"}, SPEC),
        ({"/abs": "model"}, SPEC),
        ({"a//b": "model"}, SPEC),
        ({".hidden": "model"}, SPEC),
        ({"m": "missing"}, SPEC),
        ({"m": "model"}, VersionSpec(flavor="Bad Flavor")),
        ({"m": "model"}, VersionSpec(flavor="onnx", metrics={"auc": float("nan")})),
        ({"m": "model"}, VersionSpec(flavor="onnx", params={"f": object()})),
        ({"m": "model"}, VersionSpec(flavor="onnx", tags={"k": 1})),  # type: ignore[dict-item]
        ({"m": "model"}, VersionSpec(flavor="onnx", description="nul\x00")),
    ],
)
def test_bad_registrations_store_nothing(
    registry: Registry, model_file: Path, files: dict[str, str], spec: VersionSpec
) -> None:
    paths = {k: model_file if v == "model" else model_file.parent / v for k, v in files.items()}
    with pytest.raises(InvalidArgument):
        registry.register_version("fraud", paths, spec)
    assert registry.list_models() == [] and registry.revision() == 0


def test_alias_moves_are_recorded(registry: Registry, model_file: Path) -> None:
    for _ in range(3):
        _register(registry, model_file)
    registry.set_alias("fraud", "production", 1, expected=None, reason="launch")
    registry.set_alias("fraud", "production", 2, expected=1)
    registry.set_alias("fraud", "staging", 3)
    assert registry.resolve("fraud@production").version == 2
    assert registry.get_model("fraud").aliases == {"production": 2, "staging": 3}
    assert registry.get_version("fraud", 2).aliases == ("production",)
    moved = registry.delete_alias("fraud", "staging", reason="cleanup")
    assert (moved.version, moved.previous) == (None, 3)
    history = registry.alias_history("fraud", "production")
    assert [(m.version, m.previous, m.reason) for m in history] == [
        (1, None, "launch"),
        (2, 1, None),
    ]
    assert len(registry.alias_history("fraud")) == 4
    actions = [e.action for e in registry.ledger(model="fraud")]
    assert actions[-4:] == ["alias.set", "alias.set", "alias.set", "alias.deleted"]
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        registry.delete_alias("fraud", "staging")


def test_alias_compare_and_set_conflicts_change_nothing(
    registry: Registry, model_file: Path
) -> None:
    for _ in range(3):
        _register(registry, model_file)
    registry.set_alias("fraud", "production", 3)
    revision = registry.revision()
    with pytest.raises(Conflict, match="^alias 'production' of 'fraud' points at 3, expected 2$"):
        registry.set_alias("fraud", "production", 1, expected=2)
    with pytest.raises(Conflict, match="already points at 3"):
        registry.set_alias("fraud", "production", 1, expected=None)
    with pytest.raises(Conflict, match="does not exist"):
        registry.set_alias("fraud", "canary", 1, expected=2)
    with pytest.raises(Conflict, match="^alias 'production' of 'fraud' points at 3, expected 2$"):
        registry.delete_alias("fraud", "production", expected=2)
    assert registry.revision() == revision and len(registry.alias_history("fraud")) == 1
    assert registry.get_model("fraud").aliases == {"production": 3}
    with pytest.raises(InvalidArgument):
        registry.set_alias("fraud", "production", 1, expected="3")
    with pytest.raises(InvalidArgument):
        registry.delete_alias("fraud", "production", expected=0)
    assert registry.delete_alias("fraud", "production", expected=3).previous == 3
    with pytest.raises(InvalidArgument):
        registry.set_alias("fraud", "1abc", 1)


def test_alias_preconditions(registry: Registry, model_file: Path) -> None:
    _register(registry, model_file)
    _register(registry, model_file)
    with pytest.raises(NotFound, match="no version 7"):
        registry.set_alias("fraud", "production", 7)
    with pytest.raises(NotFound, match="model 'nope' not found"):
        registry.set_alias("nope", "production", 1)
    registry.archive_version("fraud", 2)
    with pytest.raises(FailedPrecondition, match="archived"):
        registry.set_alias("fraud", "production", 2)
    registry.set_alias("fraud", "production", 1)
    with pytest.raises(FailedPrecondition, match="alias production"):
        registry.archive_version("fraud", 1)


def test_models_list_update_and_archive(registry: Registry, model_file: Path) -> None:
    _register(registry, model_file, "fraud")
    _register(registry, model_file, "churn")
    registry.update_model("fraud", description="Card FRAUD scores", tags={"team": "risk"})
    assert [m.name for m in registry.list_models()] == ["churn", "fraud"]
    assert [m.name for m in registry.list_models(query="card fr")] == ["fraud"]
    assert [m.name for m in registry.list_models(query="%")] == []
    assert [m.name for m in registry.list_models(tags={"team": "risk"})] == ["fraud"]
    archived = registry.archive_model("churn", reason="retired")
    assert archived.archived and [m.name for m in registry.list_models()] == ["fraud"]
    assert len(registry.list_models(include_archived=True)) == 2
    assert registry.resolve("churn").version == 1  # serving of archived models continues
    with pytest.raises(FailedPrecondition, match="archived"):
        _register(registry, model_file, "churn")
    assert registry.history("churn")[-1].action == "model.archived"


def test_record_and_ledger_queries(registry: Registry, model_file: Path) -> None:
    _register(registry, model_file)
    before = registry.revision()
    entry = registry.record(
        "deploy", model="fraud", version=1, details={"weights": {"1": 100}}, reason="go"
    )
    assert registry.revision() == before + 1
    assert (entry.actor, entry.action, entry.details, entry.reason) == (
        "tester",
        "deploy",
        {"weights": {"1": 100}},
        "go",
    )
    registry.record("key.issued", details={"scope": "read"})
    assert registry.ledger(action="deploy") == [entry]
    assert [e.action for e in registry.ledger(limit=2)] == ["deploy", "key.issued"]
    assert registry.history("fraud")[-1] == entry
    with pytest.raises(NotFound):
        registry.record("deploy", model="fraud", version=5)
    with pytest.raises(InvalidArgument):
        registry.record("Bad Action")
    with pytest.raises(InvalidArgument):
        registry.record("x", details={"nan": float("nan")})


def test_every_change_bumps_the_revision(registry: Registry, model_file: Path) -> None:
    seen = [registry.revision()]
    _register(registry, model_file)
    seen.append(registry.revision())
    registry.set_alias("fraud", "production", 1)
    seen.append(registry.revision())
    registry.update_model("fraud", tags={"a": "b"})
    seen.append(registry.revision())
    assert seen == sorted(set(seen))


def test_artifact_paths_detect_a_corrupt_blob(registry: Registry, model_file: Path) -> None:
    version = registry.resolve(f"fraud:{_register(registry, model_file)}")
    path = registry.artifact_paths(version)["model.onnx"]
    path.chmod(0o644)
    path.write_bytes(b"truncated")
    with pytest.raises(Unavailable, match="corrupt"):
        registry.artifact_paths(version)


def test_a_candidate_stays_out_of_latest_until_released(
    registry: Registry, model_file: Path
) -> None:
    _register(registry, model_file)
    spec = VersionSpec(flavor="onnx", stage="candidate")
    candidate = registry.register_version("fraud", {"model.onnx": model_file}, spec)
    assert candidate.stage == "candidate" and registry.resolve("fraud").version == 1
    assert registry.resolve("fraud:2").stage == "candidate"  # pinned refs still reach it
    registry.set_stage("fraud", 2, "rejected", reason="worse than the champion")
    assert registry.resolve("fraud").version == 1
    registry.set_stage("fraud", 2, None)
    assert registry.resolve("fraud").version == 2
    actions = [e.action for e in registry.history("fraud")][-2:]
    assert actions == ["version.rejected", "version.released"]
    with pytest.raises(InvalidArgument, match="stage must be one of"):
        registry.set_stage("fraud", 2, "golden")
    assert registry.get_version("fraud", 2).stage is None


def test_as_actor_records_changes_under_that_actor_only(
    registry: Registry, model_file: Path
) -> None:
    _register(registry, model_file)
    ann = registry.as_actor("ann")
    ann.set_alias("fraud", "production", 1)
    _register(ann, model_file)
    registry.set_alias("fraud", "staging", 1)
    actors = [(e.action, e.actor) for e in registry.ledger(model="fraud")]
    assert actors[-3:] == [
        ("alias.set", "ann"),
        ("version.registered", "ann"),
        ("alias.set", registry.actor),
    ]
    assert registry.actor != "ann"
    with pytest.raises(InvalidArgument):
        registry.as_actor("")
