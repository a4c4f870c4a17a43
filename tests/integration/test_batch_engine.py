"""The local batch engine against real registered models: formats, workers, errors, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument
from shipyard.jobs.batch import score

FEATURES = ["f0", "f1", "f2", "f3", "n"]


def _model() -> tuple[RandomForestClassifier, pd.DataFrame]:
    X, y = make_classification(300, 5, random_state=1)
    frame = pd.DataFrame(X[:, :4], columns=FEATURES[:4])
    frame["n"] = (X[:, 4] * 10).round().astype(np.int64)
    return RandomForestClassifier(12, max_depth=6, random_state=0).fit(frame, y), frame


def _rows(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(count, 4)), columns=FEATURES[:4])
    frame["n"] = rng.integers(-20, 20, count).astype(np.int64)
    frame.insert(0, "id", np.arange(count, dtype=np.int64) + 1000)
    frame["note"] = [f"row {i}" for i in range(count)]
    return frame


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One SQLite registry with model `rf` for the tests that are not about the database."""
    home = tmp_path_factory.mktemp("batch-home")
    with Registry(settings=Settings(home=home)) as registry:
        model, frame = _model()
        registry.register(model, "rf", sample_input=frame.head(50))
        yield registry


def _expected(registry: Registry, rows: pd.DataFrame) -> pd.DataFrame:
    outputs = registry.load("rf").infer(rows[FEATURES])
    expected = pd.DataFrame({"id": rows["id"], "prediction": outputs["predict"]})
    expected["proba_0"] = outputs["predict_proba"][:, 0]
    expected["proba_1"] = outputs["predict_proba"][:, 1]
    return expected.reset_index(drop=True)


def _read(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output).sort_values("id").reset_index(drop=True)


def test_parquet_on_both_databases_matches_in_process_and_is_recorded(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Registry(settings=settings) as registry:
        model, frame = _model()
        registry.register(model, "rf", sample_input=frame.head(50))
        rows = _rows(1000)
        rows.to_parquet(tmp_path / "in.parquet")
        summary = score(
            registry,
            "rf",
            tmp_path / "in.parquet",
            tmp_path / "out",
            chunk_rows=256,
            id_column="id",
            passthrough=["note"],
        )
        assert (summary.rows_in, summary.scored, summary.errors, summary.parts) == (
            1000,
            1000,
            0,
            4,
        )
        got = _read(tmp_path / "out")
        assert list(got.columns) == ["id", "note", "prediction", "proba_0", "proba_1"]
        pd.testing.assert_frame_equal(got.drop(columns="note"), _expected(registry, rows))
        assert sorted(p.name for p in (tmp_path / "out").glob("part-*.parquet")) == [
            f"part-0000{i}.parquet" for i in range(4)
        ]
        entry = registry.history("rf")[-1]
        assert entry.action == "batch.scored" and entry.version == 1
        assert entry.details["rows_in"] == 1000 and entry.details["checksum"] == summary.checksum
        assert entry.details["input"]["listing"][0][0] == "in.parquet"


def _write(rows: pd.DataFrame, kind: str, root: Path) -> Path:
    root.mkdir()
    halves = [rows.iloc[:400], rows.iloc[400:]]
    if kind == "csv":
        rows.to_csv(root / "in.csv", index=False)
        return root / "in.csv"
    if kind == "jsonl":
        rows.to_json(root / "in.jsonl", orient="records", lines=True)
        return root / "in.jsonl"
    for i, half in enumerate(halves):
        half.to_parquet(root / f"in-{i}.parquet")
    (root / "_SUCCESS").write_text("")  # not an input: skipped by directory listing
    return root if kind == "directory" else root / "in-*.parquet"


@pytest.mark.parametrize("kind", ["csv", "jsonl", "directory", "glob"])
def test_every_input_kind_matches_in_process(shared: Registry, tmp_path: Path, kind: str) -> None:
    rows = _rows(700, seed=2)
    source = _write(rows, kind, tmp_path / "in")
    summary = score(shared, "rf", source, tmp_path / "out", chunk_rows=300, id_column="id")
    assert summary.rows_in == summary.scored == 700
    expected = _expected(shared, rows)
    pd.testing.assert_frame_equal(_read(tmp_path / "out"), expected, check_exact=False)


def test_two_workers_write_the_same_output_as_one(shared: Registry, tmp_path: Path) -> None:
    rows = _rows(2000, seed=3)
    # Row groups of 450 rows in chunks of 100: tasks split groups and end mid-group.
    source = tmp_path / "in"
    source.mkdir()
    pq.write_table(pa.Table.from_pandas(rows), source / "a.parquet", row_group_size=450)
    rows.iloc[:333].to_csv(source / "b.csv", index=False)
    one = score(shared, "rf", source, tmp_path / "one", chunk_rows=100, id_column="id")
    two = score(shared, "rf", source, tmp_path / "two", chunk_rows=100, id_column="id", workers=2)
    assert one.checksum == two.checksum and one.parts == two.parts == 4 * 5 + 2 + 4
    assert one.rows_in == two.rows_in == 2333
    for name in sorted(p.name for p in (tmp_path / "one").glob("part-*.parquet")):
        assert pq.read_table(tmp_path / "one" / name).equals(pq.read_table(tmp_path / "two" / name))
    got = pd.read_parquet(tmp_path / "two")
    assert sorted(got["id"]) == sorted([*rows["id"], *rows["id"][:333]])
    single = got.drop_duplicates("id").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(single, _expected(shared, rows), check_exact=False)


def _with_bad_rows(tmp_path: Path) -> Path:
    rows = _rows(1000, seed=4)
    rows["f1"] = rows["f1"].astype(str)
    rows.loc[10, "f1"] = "not-a-number"
    n = rows["n"].astype("Float64")
    n[500] = None
    rows["n"] = n
    rows.loc[700, "n"] = 2.5
    rows.to_parquet(tmp_path / "bad.parquet")
    return tmp_path / "bad.parquet"


def test_bad_rows_go_to_errors_with_reasons(shared: Registry, tmp_path: Path) -> None:
    source = _with_bad_rows(tmp_path)
    summary = score(
        shared, "rf", source, tmp_path / "out", chunk_rows=256, id_column="id", max_error_rate=0.01
    )
    assert (summary.rows_in, summary.scored, summary.errors) == (1000, 997, 3)
    errors = pd.read_parquet(tmp_path / "out" / "_errors").sort_values("id")
    assert errors["id"].tolist() == [1010, 1500, 1700]
    assert errors["row"].tolist() == [10, 500, 700]
    reasons = errors["reason"].tolist()
    assert "'f1'" in reasons[0] and "not a number" in reasons[0]
    assert "'n'" in reasons[1] and "missing" in reasons[1]
    assert "fractional" in reasons[2]
    got = _read(tmp_path / "out")
    assert len(got) == 997 and not {1010, 1500, 1700} & set(got["id"])


def test_over_the_error_rate_the_job_stops(shared: Registry, tmp_path: Path) -> None:
    source = _with_bad_rows(tmp_path)
    with pytest.raises(InvalidArgument, match=r"failed validation .* over the allowed 0\.00%"):
        score(shared, "rf", source, tmp_path / "out", chunk_rows=256, id_column="id")
    assert not list((tmp_path / "out").glob("part-*.parquet"))  # only committed parts stay
    assert 1010 in set(pd.read_parquet(tmp_path / "out" / "_errors")["id"])


def test_wrong_schema_names_the_column_and_writes_nothing(shared: Registry, tmp_path: Path) -> None:
    _rows(50).drop(columns="f2").to_parquet(tmp_path / "missing.parquet")
    with pytest.raises(InvalidArgument, match="missing column 'f2'"):
        score(shared, "rf", tmp_path / "missing.parquet", tmp_path / "out")
    rows = _rows(50)
    rows["f3"] = pd.to_datetime(rows["n"], unit="s")
    rows.to_parquet(tmp_path / "typed.parquet")
    with pytest.raises(InvalidArgument, match=r"column 'f3' holds timestamp.*FP64"):
        score(shared, "rf", tmp_path / "typed.parquet", tmp_path / "out")
    _rows(50).to_parquet(tmp_path / "good.parquet")
    with pytest.raises(InvalidArgument, match="good.parquet: missing column 'key'"):
        score(shared, "rf", tmp_path / "good.parquet", tmp_path / "out", id_column="key")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_a_clear_error(shared: Registry, tmp_path: Path) -> None:
    _rows(10).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FailedPrecondition, match="cannot write to the output directory"):
        score(shared, "rf", tmp_path / "in.parquet", tmp_path / "file" / "out")


def test_another_jobs_output_is_refused_unless_overwrite(shared: Registry, tmp_path: Path) -> None:
    _rows(300, seed=5).to_parquet(tmp_path / "a.parquet")
    _rows(200, seed=6).to_parquet(tmp_path / "b.parquet")
    first = score(shared, "rf", tmp_path / "a.parquet", tmp_path / "out", chunk_rows=100)
    again = score(shared, "rf", tmp_path / "a.parquet", tmp_path / "out", chunk_rows=100)
    assert again.resumed_parts == 3 and again.checksum == first.checksum
    (tmp_path / "out" / "part-00001.parquet").unlink()  # a listed part gone: scored again
    repaired = score(shared, "rf", tmp_path / "a.parquet", tmp_path / "out", chunk_rows=100)
    assert repaired.resumed_parts == 2 and repaired.checksum == first.checksum
    with pytest.raises(Conflict, match="different batch job"):
        score(shared, "rf", tmp_path / "b.parquet", tmp_path / "out", chunk_rows=100)
    replaced = score(
        shared, "rf", tmp_path / "b.parquet", tmp_path / "out", chunk_rows=100, overwrite=True
    )
    assert replaced.rows_in == 200 and replaced.parts == 2
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="not a batch output"):
        score(shared, "rf", tmp_path / "a.parquet", tmp_path / "other")
    (tmp_path / "other" / "_manifest.json").write_text("{}")
    with pytest.raises(Conflict, match="not a batch job manifest"):
        score(shared, "rf", tmp_path / "a.parquet", tmp_path / "other")


def test_bad_options_and_missing_input_are_invalid(shared: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file"):
        score(shared, "rf", tmp_path / "nope.parquet", tmp_path / "out")
    with pytest.raises(InvalidArgument, match="workers"):
        score(shared, "rf", tmp_path, tmp_path / "out", workers=0)
    with pytest.raises(InvalidArgument, match="no input files"):
        score(shared, "rf", tmp_path, tmp_path / "out")
