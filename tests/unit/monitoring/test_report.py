"""The status summary, the time buckets and the HTML report, as pure functions."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.alerts import FIRING, RESOLVED, Alert
from shipyard.monitoring.report import MonitorInput, over_time, render_report, summarise
from shipyard.monitoring.report.series import features

T0 = datetime(2026, 2, 1, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


def _data(n: int = 600, **options: object) -> MonitorInput:
    rng = np.random.default_rng(11)
    reference = pd.DataFrame({"amount": rng.normal(0, 1, 2000), EVIL: rng.choice(["a", "b"], 2000)})
    events = pd.DataFrame(
        {"input.amount": np.r_[rng.normal(0, 1, n // 2), rng.normal(3, 1, n - n // 2)],
         f"input.{EVIL}": rng.choice(["a", "b"], n),
         "at": [T0 + timedelta(minutes=n - i) for i in range(n)],  # newest first, as the log
         "pred": rng.integers(0, 2, n), "label": rng.integers(0, 2, n)}
    )  # fmt: skip
    return MonitorInput("fraud", DriftDetector.fit(reference), events, **options)  # type: ignore[arg-type]


def test_summary_and_buckets_in_time_order() -> None:
    data = _data(label="label", prediction="pred", buckets=4)
    summary = summarise(data)
    assert summary.n_rows == 600 and summary.drift.drift
    assert summary.realised is not None and summary.realised.n_rows == 600
    assert summary.latency_p95_ms is None  # no latency_ms column in these events
    buckets = over_time(data)
    assert [b.n_rows for b in buckets] == [150] * 4
    starts = [b.start for b in buckets if b.start is not None]
    assert len(starts) == 4 and starts == sorted(starts)  # time order; the log is newest first
    # The shifted rows are the older half: after sorting, the first bucket drifted.
    assert buckets[0].drift.drift and not buckets[-1].drift.drift


def test_small_windows_get_fewer_buckets_and_features_strip_prefixes() -> None:
    data = _data(n=120, buckets=10)
    assert len(over_time(data)) == 2  # at least 50 rows per bucket
    assert list(features(data).columns) == ["amount", EVIL]


def test_firing_alerts_are_the_latest_state_per_rule() -> None:
    alerts = [
        Alert("drift", "fraud", FIRING, "warning", "old", T0),
        Alert("drift", "fraud", RESOLVED, "warning", "resolved", T0 + timedelta(hours=1)),
        Alert("latency p95", "fraud", FIRING, "warning", "slow", T0 + timedelta(hours=2)),
    ]
    data = _data(alerts=alerts)
    events = data.events.assign(latency_ms=np.arange(1, 601, dtype=float))
    summary = summarise(MonitorInput("fraud", data.detector, events, alerts=alerts))
    assert [a.rule for a in summary.firing] == ["latency p95"]
    assert summary.latency_p95_ms == np.percentile(np.arange(1, 601), 95)


def test_report_is_escaped_self_contained_html() -> None:
    alerts = [Alert("drift", "fraud", FIRING, "warning", f"feature {EVIL} moved", T0)]
    html = render_report(_data(label="label", prediction="pred", alerts=alerts), generated_at=T0)
    assert html.startswith("<!DOCTYPE html>")
    assert EVIL not in html and "&lt;script&gt;" in html  # names and messages are escaped
    assert "<script" not in html
    assert html.count("<svg") == 4  # 2 distributions, drift over time, performance over time
    assert "default-src 'none'" in html
    assert "generated 2026-02-01 00:00 UTC" in html


def test_report_without_labels_says_so() -> None:
    html = render_report(_data())
    assert "No labels or scores given: performance not computed." in html
    assert html.count("<svg") == 3


def test_bad_input_is_rejected_with_a_message() -> None:
    with pytest.raises(InvalidArgument, match="events are missing columns: nope"):
        _data(label="nope", prediction="pred")
    with pytest.raises(InvalidArgument, match="a label column needs a prediction column"):
        _data(label="label")
    with pytest.raises(InvalidArgument, match="task must be classification or regression"):
        _data(task="ranking")
    with pytest.raises(InvalidArgument, match="buckets must be between 1 and 200, got 0"):
        _data(buckets=0)
    data = _data()
    empty = MonitorInput("fraud", data.detector, data.events.iloc[:0])
    with pytest.raises(InvalidArgument, match="no events for fraud in the window"):
        summarise(empty)
    assert over_time(empty) == []
    missing = MonitorInput("fraud", data.detector, data.events.drop(columns="input.amount"))
    with pytest.raises(InvalidArgument, match="window is missing columns: amount"):
        summarise(missing)
    assert len(data.events.columns) == 5  # the caller's frame is untouched


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import shipyard.monitoring.report as package

    monkeypatch.delitem(sys.modules, "shipyard.monitoring.report.plots", raising=False)
    monkeypatch.delattr(package, "plots", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        FailedPrecondition, match=r"needs matplotlib: pip install 'shipyard\[monitoring\]'"
    ):
        render_report(_data())
