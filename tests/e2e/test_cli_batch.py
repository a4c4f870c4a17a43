"""`shipyard batch score` as a user runs it: JSON summary, resume, exit codes by error kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.cli import app


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    home = tmp_path / "home"
    X, y = make_classification(200, 4, random_state=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    with Registry(settings=Settings(home=home, database_url=database_url)) as registry:
        model = RandomForestClassifier(8, max_depth=4, random_state=0).fit(frame, y)
        registry.register(model, "churn", sample_input=frame.head(40))
        registry.set_alias("churn", "production", 1)
    rows = pd.DataFrame(np.random.default_rng(1).normal(size=(500, 4)), columns=frame.columns)
    rows.insert(0, "customer", [f"c{i}" for i in range(500)])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    rows.iloc[:100].to_parquet(tmp_path / "other.parquet")
    bad = rows.astype({"b": str})
    bad.loc[3, "b"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    return {"SHIPYARD_HOME": str(home), "SHIPYARD_DATABASE_URL": database_url}


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["batch", "score", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_score_resume_and_refusals(env: dict[str, str], tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    source = str(tmp_path / "rows.csv")
    code, stdout, stderr = run(
        env, "churn@production", source, out, "--chunk-rows", "200", "--id-column", "customer",
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["rows_in"], summary["scored"], summary["errors"], summary["parts"]) == (
        500,
        500,
        0,
        3,
    )
    scored = pd.read_parquet(out)
    assert sorted(scored["customer"]) == sorted(f"c{i}" for i in range(500))
    assert {"prediction", "proba_0", "proba_1"} <= set(scored.columns)

    code, stdout, _ = run(env, "churn@production", source, out, "--chunk-rows", "200",
                          "--id-column", "customer")  # fmt: skip
    assert code == 0 and "rows in" in stdout and "3 from an earlier run" in stdout
    assert "\x1b[" not in stdout  # no progress bar or colours when not a terminal

    code, _, stderr = run(env, "churn", str(tmp_path / "other.parquet"), out, "--json")
    assert code == 5 and "different batch job" in stderr and "--overwrite" in stderr
    code, stdout, _ = run(env, "churn", str(tmp_path / "other.parquet"), out, "--overwrite",
                          "--json")  # fmt: skip
    assert code == 0 and json.loads(stdout)["rows_in"] == 100


def test_errors_stop_the_job_with_exit_3_unless_allowed(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = str(tmp_path / "bad.csv")
    code, _, stderr = run(env, "churn", bad, str(tmp_path / "strict"), "--id-column", "customer")
    assert code == 3 and "failed validation" in stderr
    code, stdout, stderr = run(env, "churn", bad, str(tmp_path / "lenient"), "--id-column",
                               "customer", "--max-error-rate", "0.01", "--json")  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["errors"] == 1
    errors = pd.read_parquet(tmp_path / "lenient" / "_errors")
    assert errors["customer"].tolist() == ["c3"] and "'b'" in errors["reason"][0]
    code, _, stderr = run(env, "churn", str(tmp_path / "nope.csv"), str(tmp_path / "x"))
    assert code == 3 and "no such file" in stderr
