"""Register and load through the Python client, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard import ErrorKind, ModelContext, PythonModel, Registry, ShipyardError, VersionStatus
from shipyard.app.settings import Settings


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Registry(settings=settings) as registry:
        yield registry


@pytest.fixture(scope="module")
def forest() -> tuple[RandomForestClassifier, np.ndarray]:
    X, y = make_classification(400, 20, random_state=0)
    X = X.astype(np.float32)
    return RandomForestClassifier(20, max_depth=8, random_state=0).fit(X, y), X


def _nothing_stored(client: Registry) -> None:
    assert client.list_models() == []


def test_register_and_load_prefers_the_compiled_artifact(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    model, X = forest
    version = client.register(
        model, "forest", sample_input=X[:50], metrics={"acc": 0.9}, params={"n": 20}
    )
    assert (version.name, version.version, version.status, version.flavor) == (
        "forest",
        1,
        VersionStatus.READY,
        "sklearn",
    )
    assert version.compiled is not None and version.compiled["status"] == "kept"
    assert version.signature is not None and version.signature["inputs"][0]["shape"] == [-1, 20]
    assert {"compiled/model.onnx", "native/model.skops"} <= set(version.artifacts)

    fast = client.load("forest:1")
    slow = client.load("forest", compiled=False)
    assert fast.compiled and not slow.compiled
    expected = model.predict(X)
    np.testing.assert_array_equal(fast.predict(X), expected)
    np.testing.assert_array_equal(slow.predict(X), expected)
    np.testing.assert_allclose(fast.predict_proba(X), model.predict_proba(X), atol=1e-5)
    assert client.register(model, "forest").version == 2  # no sample: no signature, no compile
    assert client.get("forest").version == 2


def test_dataframe_pipeline_keeps_the_index(client: Registry) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=300),
            "age": rng.integers(18, 90, 300),
            "country": rng.choice(["de", "fr", "us"], 300),
        }
    )
    y = (frame["amount"] + (frame["country"] == "us") > 0.5).astype(int)
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["amount", "age"]),
                        ("cat", OneHotEncoder(), ["country"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, y)
    client.register(pipe, "pipe", sample_input=frame.head(40), reference_data=frame)
    loaded = client.load("pipe")
    rows = frame.iloc[[5, 7, 9]]
    out = loaded.predict(rows)
    assert isinstance(out, pd.Series) and list(out.index) == [5, 7, 9]
    np.testing.assert_array_equal(out.to_numpy(), pipe.predict(rows))
    with pytest.raises(ShipyardError, match="missing input columns: country") as info:
        loaded.predict(rows.drop(columns="country"))
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT


def test_reference_data_is_kept_as_parquet(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    model, X = forest
    version = client.register(model, "ref", sample_input=X[:10], reference_data=X)
    path = client.store.artifact_paths(version)["reference.parquet"]
    stored = pd.read_parquet(path)
    assert stored.shape == X.shape
    np.testing.assert_array_equal(stored.to_numpy(), X)


def test_lineage_records_data_code_parent_and_creator(
    client: Registry,
    forest: tuple[RandomForestClassifier, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, X = forest
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    monkeypatch.chdir(repo)
    v1 = client.register(model, "lin", lineage={"training_data": X})
    v2 = client.register(model, "lin", lineage={"training_data": X, "parent": 1, "run_id": "r-7"})
    assert v1.lineage.data is not None and v1.lineage.data.rows == 400
    assert v2.lineage.parent_version == 1 and v2.lineage.run_id == "r-7"
    assert v2.lineage.code_version == commit
    assert v2.lineage.creator == client.store.actor
    assert client.get("lin:2").lineage == v2.lineage


def test_aliases_and_history(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    model, X = forest
    client.register(model, "al", sample_input=X[:10])
    client.register(model, "al", sample_input=X[:10])
    client.set_alias("al", "production", 1)
    client.set_alias("al", "production", 2, expected=1, reason="better")
    assert client.load("al@production").version.version == 2
    with pytest.raises(ShipyardError, match="points at 2") as info:
        client.set_alias("al", "production", 1, expected=1)
    assert info.value.kind is ErrorKind.CONFLICT
    assert client.get("al@production").version == 2
    actions = [e.action for e in client.history("al")]
    assert actions.count("alias.set") == 2 and actions[0].startswith("version.")


# --- bad input: a clear error and nothing stored ---------------------------------------


def test_unknown_flavor(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    with pytest.raises(ShipyardError, match="unknown flavor") as info:
        client.register(forest[0], "x", flavor="nope")
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    _nothing_stored(client)


def test_unsupported_object(client: Registry) -> None:
    with pytest.raises(ShipyardError) as info:
        client.register({"not": "a model"}, "x")
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    _nothing_stored(client)


def test_sample_that_does_not_fit(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    model, X = forest
    with pytest.raises(ShipyardError, match="sample does not fit") as info:
        client.register(model, "x", sample_input=X[:5, :7])
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    _nothing_stored(client)


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "a\x00b", "x" * 201])
def test_bad_names(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray], name: str
) -> None:
    with pytest.raises(ShipyardError) as info:
        client.register(forest[0], name)
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    _nothing_stored(client)


def test_unknown_parent_and_bad_metrics(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    model, _ = forest
    client.register(model, "p")
    with pytest.raises(ShipyardError, match="no version 7") as info:
        client.register(model, "p", lineage={"parent": 7})
    assert info.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(ShipyardError, match="metric 'acc' must be a number"):
        client.register(model, "p", metrics={"acc": "high"})  # type: ignore[dict-item]
    assert [v.version for v in client.list_versions("p")] == [1]


def test_unknown_refs(client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]) -> None:
    client.register(forest[0], "known")
    for ref, fragment in [
        ("nope", "model 'nope' not found"),
        ("known:9", "no version 9"),
        ("known@prod", "no alias 'prod'"),
    ]:
        with pytest.raises(ShipyardError, match=fragment) as info:
            client.load(ref)
        assert info.value.kind is ErrorKind.NOT_FOUND


def test_uncompilable_model_still_registers_natively(
    client: Registry, forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    _, X = forest
    knn = KNeighborsClassifier().fit(X, np.arange(len(X)) % 2)
    version = client.register(knn, "knn", sample_input=X[:20])
    assert version.compiled is not None and version.compiled["status"] in (
        "kept",
        "unsupported",
        "rejected",
        "failed",
    )
    loaded = client.load("knn")
    np.testing.assert_array_equal(loaded.predict(X[:30]), knn.predict(X[:30]))


class Doubler(PythonModel):
    """A plain-Python model whose state comes from an artifact file."""

    def load(self, context: ModelContext) -> None:
        self.factor = float(context.artifacts["factor"].read_text())

    def predict(self, context: ModelContext, inputs: object) -> np.ndarray:
        total: np.ndarray = np.asarray(inputs, dtype=np.float64).sum(axis=1)
        return total * self.factor


def test_python_model_with_an_artifact(client: Registry, tmp_path: Path) -> None:
    factor = tmp_path / "factor.txt"
    factor.write_text("2.5")
    model = Doubler()
    model.artifacts = {"factor": factor}
    version = client.register(model, "doubler", sample_input=np.ones((3, 2)))
    assert version.flavor == "pyfunc"
    np.testing.assert_allclose(client.load("doubler").predict([[1.0, 2.0]]), [7.5])


def test_torch_module_is_traced_from_the_sample(client: Registry) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).eval()
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    version = client.register(net, "net", sample_input=X)
    assert version.flavor == "torch"
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(
        np.asarray(client.load("net").predict(X)).reshape(-1, 1), expected, rtol=1e-5
    )
