"""The CLI as a user drives it: files in, tables or JSON out, exit codes by error kind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from backends import SQLITE_ONLY
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from shipyard.cli import app


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_DATABASE_URL": database_url}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    X, y = make_classification(200, 6, random_state=3)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    model = RandomForestClassifier(10, max_depth=4, random_state=0).fit(frame, y)
    paths = {
        "skops": tmp_path / "model.skops",
        "pickle": tmp_path / "model.pkl",
        "sample": tmp_path / "sample.csv",
        "input": tmp_path / "rows.parquet",
        "truncated": tmp_path / "broken.skops",
    }
    sio.dump(model, paths["skops"])
    joblib.dump(model, paths["pickle"])
    frame.head(30).to_csv(paths["sample"], index=False)
    frame.tail(7).to_parquet(paths["input"])
    paths["truncated"].write_bytes(paths["skops"].read_bytes()[:200])
    (tmp_path / "expected.json").write_text(json.dumps(model.predict(frame.tail(7)).tolist()))
    paths["expected"] = tmp_path / "expected.json"
    return paths


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@SQLITE_ONLY
def test_register_show_alias_predict_history(
    env: dict[str, str], files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run(
        env,
        "register",
        "fraud",
        str(files["skops"]),
        "--sample",
        str(files["sample"]),
        "--tag",
        "team=risk",
        "--metric",
        "auc=0.9",
        "--json",
    )
    assert code == 0, err
    registered = json.loads(out)
    assert (
        registered["version"] == 1
        and registered["status"] == "READY"
        and registered["compiled"]["status"] == "kept"
    )

    assert (
        run(
            env,
            "register",
            "fraud",
            str(files["skops"]),
            "--sample",
            str(files["sample"]),
            "--parent",
            "1",
        )[0]
        == 0
    )
    code, out, _ = run(env, "alias", "set", "fraud", "production", "2")
    assert code == 0 and "fraud@production: nothing → 2" in out

    code, out, _ = run(env, "models", "list", "--json")
    listed = json.loads(out)
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in listed] == [
        ("fraud", 2, {"production": 2})
    ]

    code, out, _ = run(env, "models", "show", "fraud@production", "--json")
    assert json.loads(out)["version"] == 2 and json.loads(out)["lineage"]["parent_version"] == 1

    output = tmp_path / "pred.csv"
    code, _, err = run(
        env, "predict", "fraud@production", "--input", str(files["input"]), "--output", str(output)
    )
    assert code == 0, err
    assert pd.read_csv(output)["prediction"].tolist() == json.loads(files["expected"].read_text())

    code, out, _ = run(
        env, "predict", "fraud:1", "--input", str(files["input"]), "--proba", "--native"
    )
    rows = json.loads(out)
    assert len(rows) == 7 and {"prediction", "proba_0", "proba_1"} <= set(rows[0])

    code, out, _ = run(env, "history", "fraud", "--json")
    actions = [e["action"] for e in json.loads(out)]
    assert actions.count("alias.set") == 1 and len(actions) >= 3

    code, out, _ = run(env, "models", "show", "fraud")
    assert code == 0 and "Versions of fraud" in out


@pytest.mark.parametrize(
    ("args", "exit_code", "fragment"),
    [
        (["models", "show", "nope"], 4, "model 'nope' not found"),
        (["models", "show", "a/b"], 3, "must not contain"),
        (["alias", "set", "nope", "production", "1"], 4, "not found"),
        (["register", "x", "{pickle}"], 6, "trust"),
        (["register", "x", "{truncated}"], 3, "broken.skops"),
        (["register", "x", "{skops}", "--flavor", "nope"], 3, "unknown flavor"),
        (["register", "x", "{skops}", "--tag", "novalue"], 3, "key=value"),
        (["predict", "nope", "--input", "{input}"], 4, "not found"),
    ],
)
@SQLITE_ONLY
def test_errors_are_one_line_with_an_exit_code(
    env: dict[str, str], files: dict[str, Path], args: list[str], exit_code: int, fragment: str
) -> None:
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    code, _, err = run(env, *args)
    assert code == exit_code, err
    assert fragment in err and "Traceback" not in err
    code, out, _ = run(env, "models", "list", "--json")
    assert code == 0 and json.loads(out) == []  # nothing stored


@SQLITE_ONLY
def test_pickle_with_trust_is_stored_as_skops(env: dict[str, str], files: dict[str, Path]) -> None:
    code, out, err = run(env, "register", "p", str(files["pickle"]), "--trust", "--json")
    assert code == 0, err
    assert "native/model.skops" in json.loads(out)["artifacts"]


def test_console_script_and_demo(tmp_path: Path) -> None:
    env = {"SHIPYARD_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "breast-cancer@production: 1 → 2" in result.stdout
    assert (
        "from version 2" in result.stdout and "SIGTERM → drained and exited with 0" in result.stdout
    )
    # The watch step: the release's requests were logged and judged; the shift is caught.
    assert re.search(r"prediction log: v1 [\d,]+, v2 [\d,]+ requests", result.stdout)
    assert re.search(r"breast-cancer:2, \d+ distinct logged rows: no drift", result.stdout)
    assert "mean_radius x1.3): drift in 1 of 30 features" in result.stdout
    # The batch step: a 200k-row CSV scored into Parquet parts, every row once.
    assert re.search(r"scored\s+200,000\s", result.stdout), result.stdout[-2000:]
    assert re.search(r"errors\s+0\s", result.stdout)
    scored = pd.read_parquet(tmp_path / "home" / "demo-batch" / "scored")
    assert len(scored) == 200_000 and scored["customer_id"].is_unique
    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "models", "show", "breast-cancer@production", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    version = json.loads(shown.stdout)
    assert version["version"] == 2 and version["compiled"]["status"] == "kept"
    assert version["lineage"]["parent_version"] == 1 and version["lineage"]["data"]["rows"] > 300
    assert np.isclose(version["metrics"]["accuracy"], version["metrics"]["accuracy"])
    _assert_loop_closed(result.stdout, env)


def _assert_loop_closed(out: str, env: dict[str, str]) -> None:
    """The improve step: the scanner's shift fired a drift alert, whose run trained v3 on
    the labelled traffic, beat v2 on the newest of it, and was promoted through a canary."""
    assert "alert drift firing: breast-cancer v2 drifted on 569 rows" in out, out[-3000:]
    drop = re.search(
        r"alert realised accuracy firing: breast-cancer v2: realised accuracy (\S+) is below 0.9 \(569 labelled rows\)",
        out,
    )
    assert drop is not None and float(drop[1]) < 0.9, out[-3000:]
    assert "run 1 of breast-cancer-retrain: succeeded candidate v3" in out
    accuracy = re.search(r"accuracy (\d\.\d+) → (\d\.\d+)", out)
    assert accuracy is not None and float(accuracy[2]) > float(accuracy[1]), out[-3000:]
    assert re.search(
        r"rollout promoted; now deployment fraud revision \d+: direct breast-cancer:3 100%", out
    )
    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "runs", "show", "1", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    run = json.loads(shown.stdout)
    assert (run["status"], run["trigger"], run["candidate_version"]) == (
        "succeeded",
        "alert.drift",
        3,
    )
    assert run["result"]["release"] == {
        "deployment": "fraud", "revision": run["result"]["release"]["revision"],
        "strategy": "canary", "rollout": True,
    }  # fmt: skip
    history = subprocess.run(
        [sys.executable, "-m", "shipyard", "deployments", "history", "fraud", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    entries = json.loads(history.stdout)
    canaries = [e for e in entries if (e.get("reason") or "").startswith("retrained;")]
    assert [(e["action"], e["details"]["model"]) for e in canaries] == [
        ("deployment.deployed", "breast-cancer:3")
    ]
    last = entries[-1]
    assert last["action"] == "rollout.promoted", [e["action"] for e in entries[-5:]]
    assert [(v["version"], v["weight"]) for v in last["details"]["spec"]["variants"]] == [(3, 100)]
    report = (Path(env["SHIPYARD_HOME"]) / "demo-report.html").read_text()
    assert report.count("<svg") >= 3 and "realised accuracy" in report


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_DATABASE_URL": "postgresql://shipyard:s3cret@127.0.0.1:1/shipyard",
        "SHIPYARD_DATABASE_TIMEOUT_S": "2",
    }
    code, _, err = run(env, "models", "list")
    assert code == 11, err
    assert "cannot reach the database" in err and "s3cret" not in err and "Traceback" not in err
