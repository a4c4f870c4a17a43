"""P5: a batch job killed with -9 at random points, then re-run, scores every row exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from shipyard import Registry
from shipyard.app.settings import Settings

ROWS = 10_000
PARTS = 500


def _parts_done(output: Path) -> int:
    manifest = output / "_manifest.json"
    return len(orjson.loads(manifest.read_bytes())["parts"]) if manifest.exists() else 0


def _kill_mid_job(process: subprocess.Popen[bytes], output: Path, delay: float) -> int:
    """Wait until this run has committed a part, wait `delay` more, kill -9 its process group."""
    before = _parts_done(output)
    deadline = time.monotonic() + 60
    while process.poll() is None and _parts_done(output) == before:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return _parts_done(output)


def _setup(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    X, y = make_classification(300, 6, random_state=7)
    columns = [f"x{i}" for i in range(6)]
    frame = pd.DataFrame(X, columns=columns)
    with Registry(settings=Settings(home=home)) as registry:
        model = RandomForestClassifier(10, max_depth=5, random_state=0).fit(frame, y)
        registry.register(model, "rf", sample_input=frame.head(50))
    rows = pd.DataFrame(np.random.default_rng(0).normal(size=(ROWS, 6)), columns=columns)
    rows.insert(0, "id", np.arange(ROWS, dtype=np.int64))
    for i in range(4):  # several files so kills land in different files too
        rows.iloc[i * 2500 : (i + 1) * 2500].to_parquet(tmp_path / "in" / f"{i}.parquet")
    return {**os.environ, "SHIPYARD_HOME": str(home)}


def _command(tmp_path: Path, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "shipyard", "batch", "score", "rf", str(tmp_path / "in"),
        str(tmp_path / "out"), "--chunk-rows", "20", "--id-column", "id",
        "--workers", str(workers), "--json",
    ]  # fmt: skip


def test_killed_jobs_rerun_to_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    env = _setup(tmp_path)
    chooser = random.Random(5)
    mid_job, outcomes = 0, []
    for attempt in range(5):
        log = tmp_path / f"run-{attempt}.log"
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                _command(tmp_path, workers=1 + attempt % 2),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # so the kill reaches its worker processes too
            )
            parts = _kill_mid_job(process, tmp_path / "out", chooser.uniform(0, 0.15))
        outcomes.append((process.returncode, parts, log.read_text()[-2000:]))
        mid_job += 0 < parts < PARTS
    done = subprocess.run(
        _command(tmp_path, workers=1), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert mid_job >= 3, f"most kills must land while parts are being written: {outcomes}"
    assert orjson.loads(done.stdout)["resumed_parts"] > 0
    scored = pd.read_parquet(tmp_path / "out")
    assert len(scored) == ROWS
    assert sorted(scored["id"].tolist()) == list(range(ROWS))
    assert not list((tmp_path / "out").glob(".*.tmp"))
