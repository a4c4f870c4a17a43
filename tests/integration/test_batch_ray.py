"""The Ray engine of `shipyard batch score` on a Ray cluster of one head node (2 CPUs),
joined by address as a user joins theirs: the local engine's output.

The tests are kept to the few runs that show the guarantees: the same parts, a no-op
re-run, and an interrupted job finished exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.core.errors import InvalidArgument
from shipyard.jobs import batch_ray
from shipyard.jobs.batch import BatchSummary, score

ray = pytest.importorskip("ray")  # the `ray` extra; scripts/install installs it

# The Ray tests share one cluster (tests/support/ray_cluster.py) on one xdist worker: two head
# nodes on one machine would contend for the agents' fixed default ports.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

FEATURES = ["f0", "f1", "f2", "f3", "n"]
ROWS = 3000
BAD_EVERY = 40  # in the CSV's second half: a text value in the integer column "n"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    X, y = make_classification(300, 5, random_state=1)
    frame = pd.DataFrame(X[:, :4], columns=FEATURES[:4])
    frame["n"] = (X[:, 4] * 10).round().astype(np.int64)
    model = RandomForestClassifier(12, max_depth=6, random_state=0).fit(frame, y)
    with Registry(settings=Settings(home=tmp_path_factory.mktemp("ray-home"))) as registry:
        registry.register(model, "rf", sample_input=frame.head(50))
        yield registry


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parquet (row groups of 450 rows, cut mid-chunk) and a CSV with some invalid rows."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(rng.normal(size=(ROWS, 4)), columns=FEATURES[:4])
    rows["n"] = rng.integers(-20, 20, ROWS)
    rows.insert(0, "id", np.arange(ROWS, dtype=np.int64) + 1000)
    root = tmp_path_factory.mktemp("ray-in")
    pq.write_table(pa.Table.from_pandas(rows.iloc[:2000]), root / "a.parquet", row_group_size=450)
    text = rows.iloc[2000:].astype({"n": object})
    text.loc[text.index[500::BAD_EVERY], "n"] = "oops"
    text.to_csv(root / "b.csv", index=False)
    return root


def _score(registry: Registry, source: Path, output: Path, **options: object) -> BatchSummary:
    return score(
        registry,
        "rf",
        source,
        output,
        chunk_rows=100,
        id_column="id",
        **options,  # type: ignore[arg-type]
    )


def _on_ray(
    ray_cluster: str, registry: Registry, source: Path, output: Path, **options: object
) -> BatchSummary:
    """`_score` on the test's cluster with its two CPUs."""
    return _score(
        registry, source, output, engine="ray", workers=2, ray_address=ray_cluster, **options
    )


def _frame(path: Path, key: str = "id") -> pd.DataFrame:
    return pd.read_parquet(path).sort_values(key).reset_index(drop=True)


def _parts(output: Path) -> list[str]:
    return sorted(p.name for p in output.glob("part-*.parquet"))


def _assert_same_output(local: Path, other: Path) -> None:
    assert _parts(other) == _parts(local)
    for name in _parts(local):  # byte for byte the same table
        assert pq.read_table(other / name).equals(pq.read_table(local / name)), name
    pd.testing.assert_frame_equal(_frame(other), _frame(local))
    pd.testing.assert_frame_equal(_frame(other / "_errors"), _frame(local / "_errors"))


def test_ray_writes_the_local_engines_output_and_a_rerun_is_a_no_op(
    registry: Registry,
    source: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ray_cluster: str,
) -> None:
    local = _score(registry, source, tmp_path / "local", max_error_rate=0.05)

    remote = _on_ray(ray_cluster, registry, source, tmp_path / "ray", max_error_rate=0.05)

    assert not ray.is_initialized(), "the job leaves the cluster it joined"
    errors = len(range(500, 1000, BAD_EVERY))
    assert (remote.rows_in, remote.scored, remote.errors) == (ROWS, ROWS - errors, errors)
    assert (remote.parts, remote.checksum) == (local.parts, local.checksum)
    _assert_same_output(tmp_path / "local", tmp_path / "ray")
    reasons = set(_frame(tmp_path / "ray" / "_errors")["reason"])
    assert reasons == {"column 'n': not a number"}
    entry = registry.history("rf")[-1]
    assert entry.details["engine"] == "ray" and entry.details["checksum"] == local.checksum

    def no_ray(*args: object) -> None:
        raise AssertionError("a finished job must not start Ray")

    monkeypatch.setattr(batch_ray, "_connected", no_ray)
    again = _on_ray(ray_cluster, registry, source, tmp_path / "ray", max_error_rate=0.05)
    assert again.resumed_parts == local.parts and again.checksum == local.checksum


def test_an_interrupted_ray_job_resumes_to_each_row_exactly_once(
    registry: Registry, source: Path, tmp_path: Path, ray_cluster: str
) -> None:
    local = _score(registry, source, tmp_path / "local", max_error_rate=0.05)
    out = tmp_path / "ray"
    # The first CSV chunk with a bad row stops the job (0% allowed) part-way.
    with pytest.raises(InvalidArgument, match="failed validation"):
        _on_ray(ray_cluster, registry, source, out)
    assert not ray.is_initialized(), "the job leaves the cluster it joined"
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    listed = [f"part-{p['seq']:05d}.parquet" for p in manifest["parts"]]
    assert not manifest["complete"] and 0 < len(listed) < local.parts
    assert _parts(out) == sorted(listed), "no part the manifest does not list is left"
    # As if killed between writing a part and listing it: the re-run writes it again.
    stray = next(n for n in _parts(tmp_path / "local") if n not in listed)
    (out / stray).write_bytes(b"half-written")

    resumed = _on_ray(ray_cluster, registry, source, out, max_error_rate=0.05)
    assert resumed.resumed_parts == len(listed)
    assert (resumed.parts, resumed.checksum) == (local.parts, local.checksum)
    _assert_same_output(tmp_path / "local", out)
    assert sorted(_frame(out)["id"]) == sorted(_frame(tmp_path / "local")["id"])
