"""`shipyard monitor report` and `status` as real processes; the report rendered in headless
Chromium (Debian's, driven by Playwright) with its plots drawn and no network request made."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from backends import SQLITE_ONLY
from playwright.sync_api import sync_playwright

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alerts import FIRING, Alert
from shipyard.monitoring.eventlog import ParquetSink
from shipyard.storage.database import Database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    n, m = 3000, 1200
    score = rng.uniform(size=n)
    reference = pd.DataFrame(
        {"amount": rng.normal(40, 5, n), "age": rng.normal(35, 8, n),
         "region": rng.choice(["eu", "us", "apac"], n), "proba": score,
         "label": (rng.uniform(size=n) < score).astype(int)}
    )  # fmt: skip
    start = datetime(2026, 3, 1, tzinfo=UTC)
    score = rng.uniform(size=m)
    window = pd.DataFrame(
        {"request_id": [f"r{i}" for i in range(m)],
         "at": [start + timedelta(minutes=i) for i in range(m)],
         # The second half of the window moves `amount`: drift appears over time.
         "input.amount": np.r_[rng.normal(40, 5, m // 2), rng.normal(52, 5, m // 2)],
         "input.age": rng.normal(35, 8, m),
         "input.region": rng.choice(["eu", "us", "apac"], m),
         "output.proba": score, "output.label": (score >= 0.5).astype(int)}
    )  # fmt: skip
    feedback = pd.DataFrame(
        {"request_id": window["request_id"], "value": (rng.uniform(size=m) < score).astype(int)}
    )
    paths = {
        "reference": tmp_path / "reference.parquet",
        "window": tmp_path / "window.parquet",
        "feedback": tmp_path / "feedback.csv",
    }
    reference.to_parquet(paths["reference"])
    window.to_parquet(paths["window"])
    feedback.to_csv(paths["feedback"], index=False)
    return paths


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {**os.environ, "SHIPYARD_HOME": str(tmp_path / "home"),
            "SHIPYARD_DATABASE_URL": database_url}  # fmt: skip


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHIPYARD, "monitor", *args], env=env, capture_output=True, text=True, timeout=300
    )


COMMON = ["--prediction", "output.label", "--score", "output.proba"]


@SQLITE_ONLY
def test_report_renders_offline_in_chromium(
    tmp_path: Path, files: dict[str, Path], database_url: str
) -> None:
    with Database(database_url) as database:
        AlertHistory(database).record(
            Alert("drift", "fraud", FIRING, "warning", "feature `amount` shifted: median 40 → 52",
                  datetime(2026, 3, 1, 12, tzinfo=UTC))
        )  # fmt: skip
    out = tmp_path / "report.html"
    result = _run(
        _env(tmp_path, database_url), "report", "fraud", "--reference", str(files["reference"]),
        "--window", str(files["window"]), "--feedback", str(files["feedback"]), *COMMON,
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (" in result.stdout  # one line, never wrapped
    html = out.read_text()
    for external in ("<script", "<link", "src=", 'href="http'):
        assert external not in html  # nothing to fetch: plots and styles are inline
    assert re.search(r"url\((?!#)", html) is None  # only in-document references
    drawn = _render(out)
    assert drawn["requests"] == [out.as_uri()]  # the page itself, nothing else
    # 3 distributions + drift over time + performance over time, each with drawn paths.
    assert drawn["svgs"] == 5
    assert min(drawn["paths_per_svg"]) >= 10
    assert all(width > 100 for width in drawn["widths"])
    assert "feature `amount` shifted" in drawn["text"]
    assert "median 40 → 52" in drawn["text"]  # the stored alert is listed
    assert "estimated" in drawn["text"] and "realised" in drawn["text"]


def _render(path: Path) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run scripts/install (apt-get chromium)")
    requests: list[str] = []
    profile = path.parent / "chromium-profile"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(path.as_uri(), wait_until="load")
            widths = page.eval_on_selector_all(
                "svg", "els => els.map(e => e.getBoundingClientRect().width)"
            )
            paths = page.eval_on_selector_all(
                "div.plot > svg",
                "els => els.map(s => [...s.querySelectorAll('path')]"
                ".filter(p => (p.getAttribute('d') || '').length > 0).length)",
            )
            text = page.inner_text("body")
        finally:
            context.close()
    return {"requests": requests, "svgs": len(widths), "widths": widths,
            "paths_per_svg": paths, "text": text}  # fmt: skip


@SQLITE_ONLY
def test_status_prints_drift_performance_and_json(
    tmp_path: Path, files: dict[str, Path], database_url: str
) -> None:
    env = _env(tmp_path, database_url)
    args = ["status", "fraud", "--reference", str(files["reference"]), "--window",
            str(files["window"]), "--feedback", str(files["feedback"]), *COMMON]  # fmt: skip
    result = _run(env, *args)
    assert result.returncode == 0, result.stderr
    assert "fraud: DRIFT" in result.stdout and "amount" in result.stdout
    assert "realised performance" in result.stdout and "no alerts firing" in result.stdout
    data = orjson.loads(_run(env, *args, "--json").stdout)
    assert data["drift"]["drift"] is True
    assert data["drift"]["features"]["amount"]["drift"] is True
    assert data["drift"]["features"]["age"]["drift"] is False
    assert data["realised"]["n_rows"] == 1200
    assert 0.5 < data["estimated"]["metrics"]["accuracy"] < 1.0


def test_bad_input_gives_one_readable_line(tmp_path: Path, files: dict[str, Path]) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'shipyard.db'}")
    base = ["--reference", str(files["reference"])]
    no_log = _run(env, "status", "fraud", *base)
    assert no_log.returncode != 0
    assert "no logged predictions of fraud in the last 24h" in no_log.stderr
    assert "pass --window FILE" in no_log.stderr
    missing = _run(env, "status", "fraud", *base, "--window", str(tmp_path / "nope.csv"))
    assert missing.returncode != 0 and "nope.csv: no such file" in missing.stderr
    wrong = _run(env, "status", "fraud", *base, "--window", str(files["window"]),
                 "--prediction", "output.nothing")  # fmt: skip
    assert wrong.returncode != 0
    assert "events are missing columns: output.nothing" in wrong.stderr
    out = tmp_path / "no-such-dir" / "report.html"
    unwritable = _run(
        env, "report", "fraud", *base, "--window", str(files["window"]), "-o", str(out)
    )
    assert unwritable.returncode != 0 and "cannot write" in unwritable.stderr
    assert pd.read_parquet(files["window"]).shape == (1200, 7)  # inputs untouched


def test_status_reads_the_prediction_log(tmp_path: Path, files: dict[str, Path]) -> None:
    """Without --window the command reads the Parquet prediction log under $SHIPYARD_HOME."""
    home = tmp_path / "home"
    window = pd.read_parquet(files["window"])
    now = datetime.now(UTC)
    sink = ParquetSink(home)
    sink.write(
        [
            PredictionEvent(
                request_id=row["request_id"],
                model="fraud",
                version=1,
                at=now - timedelta(seconds=len(window) - i),
                inputs={
                    "amount": [row["input.amount"]],
                    "age": [row["input.age"]],
                    "region": [row["input.region"]],
                },
                outputs={"proba": [row["output.proba"]], "label": [int(row["output.label"])]},
                latency_ms=1.0,
            )  # fmt: skip
            for i, row in enumerate(window.to_dict("records"))
        ]
    )
    sink.close()
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'shipyard.db'}")
    result = _run(
        env, "status", "fraud", "--reference", str(files["reference"]), "--since", "1d",
        "--feedback", str(files["feedback"]), *COMMON, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["rows"] == 1200 and data["realised"]["n_rows"] == 1200
    assert data["drift"]["features"]["amount"]["drift"] is True
    assert set(data["drift"]["features"]) == {"amount", "age", "region"}
    assert data["latency_p95_ms"] == 1.0
