"""Judging one window of the prediction log: which version speaks for the model, which
columns are compared, when there is no judgement, and the per-version detector cache."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import NotFound
from shipyard.monitoring.serialization import reference_profile
from shipyard.monitoring.window_check import (
    DetectorCache,
    NotJudged,
    dominant_version,
    feature_frame,
    judge,
    latency_p95,
    logged_models,
    prediction_column,
    realised_performance,
)

AT = datetime(2026, 12, 1, tzinfo=UTC)


def reference(seed: int = 0, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})


def events(version: int, n: int, *, shift: float = 0.0, seed: int = 1) -> pd.DataFrame:
    frame = reference(seed, n)
    return pd.DataFrame(
        {
            "model": "fraud",
            "version": version,
            "latency_ms": 1.0,
            "input.a": frame["a"] + shift,
            "input.b": frame["b"],
            "output.label": 0,
        }
    )


class Loader:
    """A reference store that counts its reads."""

    def __init__(self, tables: dict[tuple[str, int], pd.DataFrame | None]) -> None:
        self.tables = tables
        self.reads: list[tuple[str, int]] = []

    def __call__(self, model: str, version: int) -> pd.DataFrame | None:
        self.reads.append((model, version))
        if (model, version) not in self.tables:
            raise NotFound(f"version {version} of {model!r} not found")
        return self.tables[(model, version)]


def test_logged_models_are_the_folders_of_the_log(tmp_path: Path) -> None:
    assert logged_models(tmp_path) == []
    for name in ("fraud", "churn", ".hidden"):
        (tmp_path / "events" / name).mkdir(parents=True)
    (tmp_path / "events" / "stray.txt").write_text("")
    assert logged_models(tmp_path) == ["churn", "fraud"]


def test_feature_frame_keeps_the_inputs_under_their_own_names() -> None:
    frame = feature_frame(events(1, 3))
    assert list(frame.columns) == ["a", "b"]


def test_the_version_that_served_most_rows_speaks_newer_on_a_tie() -> None:
    assert dominant_version(pd.concat([events(1, 5), events(2, 3)])) == 1
    assert dominant_version(pd.concat([events(1, 3), events(2, 3)])) == 2
    assert dominant_version(pd.DataFrame({"version": []})) is None


def test_an_empty_window_is_not_judged() -> None:
    cache = DetectorCache(Loader({}))
    judgement = judge("fraud", pd.DataFrame({"version": []}), cache, at=AT, min_rows=10)
    assert judgement.observation is None
    assert judgement.reason == "no logged predictions in the window"


def test_a_canary_window_is_judged_on_the_main_versions_rows_and_reference() -> None:
    loader = Loader({("fraud", 1): reference(), ("fraud", 2): reference(5)})
    window = pd.concat([events(1, 300), events(2, 100, shift=5.0)])
    judgement = judge("fraud", window, DetectorCache(loader), at=AT, min_rows=200)
    assert judgement.version == 1 and judgement.n_rows == 300
    assert judgement.observation is not None and judgement.observation.drift is not None
    assert not judgement.observation.drift.drift  # the shifted canary rows were left out
    assert judgement.observation.version == 1 and judgement.observation.at == AT
    assert loader.reads == [("fraud", 1)]


def test_a_shifted_window_drifts_on_the_shifted_feature() -> None:
    loader = Loader({("fraud", 1): reference()})
    judgement = judge("fraud", events(1, 300, shift=2.0), DetectorCache(loader), at=AT, min_rows=1)
    assert judgement.observation is not None and judgement.observation.drift is not None
    drift = judgement.observation.drift
    assert drift.drift and drift.features["a"].drift and not drift.features["b"].drift


def test_reference_columns_that_are_not_logged_are_left_out() -> None:
    with_label = reference().assign(label=1, region="eu")
    loader = Loader({("fraud", 1): with_label})
    judgement = judge("fraud", events(1, 300), DetectorCache(loader), at=AT, min_rows=1)
    assert judgement.observation is not None and judgement.observation.drift is not None
    assert list(judgement.observation.drift.features) == ["a", "b"]


def test_too_few_rows_are_not_judged_and_the_reference_is_not_read() -> None:
    loader = Loader({("fraud", 1): reference()})
    judgement = judge("fraud", events(1, 199), DetectorCache(loader), at=AT, min_rows=200)
    assert judgement.observation is None and judgement.n_rows == 199
    assert judgement.reason == "199 rows of v1 in the window, 200 needed to judge"
    assert loader.reads == []


def test_a_version_without_reference_is_looked_up_once() -> None:
    loader = Loader({("fraud", 1): None})
    cache = DetectorCache(loader)
    for _ in range(3):
        judgement = judge("fraud", events(1, 50), cache, at=AT, min_rows=1)
        assert judgement.reason == "fraud v1 was registered without reference data"
    assert loader.reads == [("fraud", 1)]


def test_an_unknown_model_is_not_judged() -> None:
    judgement = judge("fraud", events(3, 50), DetectorCache(Loader({})), at=AT, min_rows=1)
    assert judgement.observation is None
    assert judgement.reason == "version 3 of 'fraud' not found"


def test_no_common_column_is_not_judged_and_looked_at_again() -> None:
    loader = Loader({("fraud", 1): pd.DataFrame({"x": [1.0, 2.0]})})
    cache = DetectorCache(loader)
    with pytest.raises(NotJudged, match=r"no logged input of fraud v1 is a reference column"):
        cache.detector("fraud", 1, ["a", "b"])
    judgement = judge("fraud", events(1, 10), cache, at=AT, min_rows=1)
    assert judgement.reason is not None and "(reference: x; logged: a, b)" in judgement.reason
    assert loader.reads == [("fraud", 1), ("fraud", 1)]  # the log may gain the column later


def test_the_cache_refits_when_the_logged_columns_change_and_stays_bounded() -> None:
    loader = Loader({("fraud", v): reference(v) for v in (1, 2, 3)})
    cache = DetectorCache(loader, max_entries=2)
    both = cache.detector("fraud", 1, ["b", "a"])
    assert cache.detector("fraud", 1, ["a", "b"]) is both
    only_a = cache.detector("fraud", 1, ["a"])
    assert list(only_a.profiles) == ["a"]
    cache.detector("fraud", 2, ["a"])
    cache.detector("fraud", 3, ["a"])  # evicts version 1, the least recently used
    cache.detector("fraud", 1, ["a"])
    assert loader.reads == [("fraud", 1), ("fraud", 1), ("fraud", 2), ("fraud", 3), ("fraud", 1)]


def test_a_stored_profile_is_used_instead_of_refitting_the_reference() -> None:
    stored = reference_profile(reference())
    refits = Loader({("fraud", 1): reference()})
    cache = DetectorCache(refits, profiles=lambda model, version: stored, alpha=0.01)
    window = events(1, 300, shift=0.5)
    judgement = judge("fraud", window, cache, at=AT, min_rows=1)
    assert refits.reads == []  # the table was never read
    assert (
        judgement.observation is not None and cache.detector("fraud", 1, ["a", "b"]).alpha == 0.01
    )
    fitted = judge("fraud", window, DetectorCache(refits, alpha=0.01), at=AT, min_rows=1)
    assert fitted.observation is not None
    mine, theirs = judgement.observation.drift, fitted.observation.drift
    assert mine is not None and theirs is not None
    assert mine.drift and mine.p_value == theirs.p_value
    assert {n: f.p_value for n, f in mine.features.items()} == {
        n: f.p_value for n, f in theirs.features.items()
    }


def test_a_profile_covering_unlogged_columns_falls_back_to_the_table() -> None:
    """The joint test spans every profiled column: with `b` not logged, fit on `a` alone."""
    stored = reference_profile(reference())
    refits = Loader({("fraud", 1): reference()})
    cache = DetectorCache(refits, profiles=lambda model, version: stored)
    judgement = judge("fraud", events(1, 300).drop(columns="input.b"), cache, at=AT, min_rows=1)
    assert refits.reads == [("fraud", 1)]
    assert judgement.observation is not None and judgement.observation.drift is not None
    assert set(judgement.observation.drift.features) == {"a"}


def _logged(outputs: dict[str, list[object]], ids: list[str] | None = None) -> pd.DataFrame:
    n = len(next(iter(outputs.values())))
    frame = pd.DataFrame({f"output.{k}": v for k, v in outputs.items()})
    frame["request_id"] = ids or [f"r{i}" for i in range(n)]
    frame["event_id"] = [f"e{i}" for i in range(n)]
    frame["latency_ms"] = np.arange(1, n + 1, dtype=np.float64)
    return frame


def test_the_prediction_is_the_named_or_the_only_scalar_output() -> None:
    both = _logged({"predict_proba": [[0.2, 0.8]] * 3, "predict": [1, 0, 1]})
    assert prediction_column(both) == "output.predict"
    assert prediction_column(_logged({"score": [0.1, 0.2, 0.3]})) == "output.score"
    assert prediction_column(_logged({"x": [1, 2], "y": [3, 4]})) is None  # which one?


def test_realised_performance_counts_single_row_labelled_requests() -> None:
    rows = _logged({"predict": [1, 0, 1, 1]}, ids=["a", "b", "c", "c"])  # "c": two rows
    labels = {"a": 1, "b": 1, "c": 1}
    realised = realised_performance(rows, labels, min_labelled=2)
    assert realised is not None and realised.task == "classification"
    assert realised.n_rows == 2 and realised.metrics["accuracy"] == 0.5
    assert realised_performance(rows, labels, min_labelled=3) is None
    regression = _logged({"predict": [1.0, 2.0, 4.0]})
    found = realised_performance(regression, {"r0": 1.0, "r1": 2.0, "r2": 2.0}, min_labelled=3)
    assert found is not None and found.task == "regression"
    assert found.metrics["mae"] == pytest.approx(2 / 3)


def test_latency_p95_is_per_request() -> None:
    rows = _logged({"predict": list(range(100))})
    assert latency_p95(rows) == pytest.approx(95.05)
    assert latency_p95(rows.iloc[:0]) is None
