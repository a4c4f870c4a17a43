"""Choosing the batch engine: a missing Ray extra or an unknown engine is refused before any
output is written, and `import shipyard` never imports Ray (it is imported by the engine)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.cli import app
from shipyard.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from shipyard.jobs.batch import score

INSTALL = "pip install 'shipyard[ray]'"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A registry with model `lr`, and `rows.parquet` to score."""
    X, y = make_classification(200, 4, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    with Registry(settings=Settings(home=tmp_path / "home")) as registry:
        registry.register(LogisticRegression().fit(frame, y), "lr", sample_input=frame.head(20))
    frame.insert(0, "id", np.arange(len(frame)))
    frame.to_parquet(tmp_path / "rows.parquet")
    return tmp_path / "home"


@pytest.fixture
def without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import ray` fails as it does where the extra is not installed."""
    for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.mark.usefixtures("without_ray")
def test_the_ray_engine_without_the_extra_names_the_install_command(home: Path) -> None:
    out = home.parent / "out"
    with (
        Registry(settings=Settings(home=home)) as registry,
        pytest.raises(FailedPrecondition, match=r"pip install 'shipyard\[ray\]'"),
    ):
        score(registry, "lr", home.parent / "rows.parquet", out, engine="ray")
    assert not out.exists(), "refused before anything is written"


@pytest.mark.usefixtures("without_ray")
def test_the_cli_says_how_to_install_the_ray_engine(home: Path) -> None:
    out = home.parent / "out"
    result = CliRunner().invoke(
        app,
        ["batch", "score", "lr", str(home.parent / "rows.parquet"), str(out), "--engine", "ray"],
        env={"SHIPYARD_HOME": str(home), "COLUMNS": "300"},
    )
    assert result.exit_code == 6, result.output  # FAILED_PRECONDITION
    assert INSTALL in " ".join(result.output.split())
    assert not out.exists()


def test_an_unknown_engine_is_refused(home: Path) -> None:
    out = home.parent / "out"
    with (
        Registry(settings=Settings(home=home)) as registry,
        pytest.raises(InvalidArgument, match="engine must be one of local, ray; got 'spark'"),
    ):
        score(registry, "lr", home.parent / "rows.parquet", out, engine="spark")
    assert not out.exists()


def test_importing_shipyard_and_its_batch_engines_does_not_import_ray() -> None:
    code = (
        "import sys, shipyard, shipyard.batch, shipyard.cli, shipyard.cli.batch, "
        "shipyard.jobs.batch, shipyard.jobs.batch_ray\n"
        "loaded = sorted(n for n in sys.modules if n == 'ray' or n.startswith('ray.'))\n"
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _score_on(home: Path, address: str) -> Path:
    out = home.parent / "out"
    with Registry(settings=Settings(home=home)) as registry:
        score(registry, "lr", home.parent / "rows.parquet", out, engine="ray", ray_address=address)
    return out


def _nothing_written(out: Path) -> None:
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    assert manifest["parts"] == [] and not manifest["complete"]  # a re-run starts the job afresh
    assert not list(out.glob("part-*.parquet"))


def test_a_ray_address_nothing_listens_on_is_refused_at_once(home: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port just freed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    with pytest.raises(Unavailable, match=rf"cannot reach the Ray cluster at {address}"):
        _score_on(home, address)
    _nothing_written(home.parent / "out")


def test_a_ray_cluster_that_refuses_the_job_is_unavailable(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")

    def refuse(**options: object) -> None:  # what ray.init raises after its retries
        raise ConnectionError(f"Failed to connect to Ray cluster at {options['address']}")

    monkeypatch.setattr(ray, "init", refuse)
    with socket.socket() as listener:  # something listens, so the reachability probe passes
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(Unavailable, match=rf"cannot connect to the Ray cluster at {address}"):
            _score_on(home, address)
    _nothing_written(home.parent / "out")


def test_a_ray_job_that_died_after_its_last_part_is_finished_without_ray(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    from shipyard.jobs import batch_ray

    out = home.parent / "out"
    with Registry(settings=Settings(home=home)) as registry:
        first = score(registry, "lr", home.parent / "rows.parquet", out, chunk_rows=50)
        manifest = orjson.loads((out / "_manifest.json").read_bytes())
        (out / "_manifest.json").write_bytes(orjson.dumps({**manifest, "complete": False}))

        def no_ray(*args: object) -> None:
            raise AssertionError("every part is listed: nothing to run on Ray")

        monkeypatch.setattr(batch_ray, "_connected", no_ray)
        again = score(
            registry, "lr", home.parent / "rows.parquet", out, chunk_rows=50, engine="ray"
        )
    assert (again.resumed_parts, again.checksum) == (first.parts, first.checksum)
    assert orjson.loads((out / "_manifest.json").read_bytes())["complete"] is True
