"""Registration stores a drift profile beside the reference table: bounded (~2 KB per numeric
feature, whatever the row count), pickle-free, and the same detector monitoring would fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from shipyard.app.settings import Settings
from shipyard.client import Registry
from shipyard.monitoring import DriftDetector
from shipyard.packaging.register import PROFILE_FILE, REFERENCE_FILE


def test_registration_stores_a_bounded_profile(tmp_path: Path, database_url: str) -> None:
    rng = np.random.default_rng(2)
    rows = 50_000
    frame = pd.DataFrame(rng.normal(size=(rows, 10)), columns=[f"f{i}" for i in range(10)])
    frame["segment"] = rng.choice(["a", "b", "c"], size=rows)
    target = frame["f0"] * 2.0
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Registry(settings=settings) as registry:
        numeric = frame.drop(columns="segment")
        model = LinearRegression().fit(numeric, target)
        version = registry.register(
            model, "price", sample_input=numeric.head(20), reference_data=frame
        )
        assert {REFERENCE_FILE, PROFILE_FILE} <= set(version.artifacts)
        size = version.artifacts[PROFILE_FILE].size
        assert size < 2_500 * 11, size  # 10 numeric + 1 categorical feature, 50k rows
        assert version.artifacts[REFERENCE_FILE].size > 20 * size

        paths = registry.store.artifact_paths(version, [PROFILE_FILE])
        assert list(paths) == [PROFILE_FILE]
        stored = DriftDetector.from_bytes(paths[PROFILE_FILE].read_bytes())
        fitted = DriftDetector.fit(registry.reference_data("price:1"))  # type: ignore[arg-type]
        shifted = frame.sample(2_000, random_state=0).assign(f3=lambda d: d["f3"] + 0.3)
        mine, theirs = stored.check(shifted), fitted.check(shifted)
        assert mine.drift and mine.features["f3"].drift
        assert {n: f.p_value for n, f in mine.features.items()} == {
            n: f.p_value for n, f in theirs.features.items()
        }

        plain = registry.register(model, "bare", sample_input=numeric.head(20))
        assert PROFILE_FILE not in plain.artifacts
