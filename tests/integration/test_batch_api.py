"""`shipyard.batch.score` on the default registry (the one SHIPYARD_HOME points at)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import shipyard


def test_score_with_the_default_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    X, y = make_classification(400, 5, random_state=1)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    model = RandomForestClassifier(5, max_depth=4, random_state=0).fit(frame, y)
    shipyard.register(model, "rf", sample_input=frame.head(20))
    frame.insert(0, "id", np.arange(len(frame)))
    frame.to_parquet(tmp_path / "rows.parquet")

    summary = shipyard.batch.score(
        "rf", tmp_path / "rows.parquet", tmp_path / "out", id_column="id"
    )

    scored = pd.read_parquet(tmp_path / "out").sort_values("id")
    assert summary.scored == len(frame) and len(scored) == len(frame)
    expected = model.predict(frame.drop(columns="id"))
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), expected)
