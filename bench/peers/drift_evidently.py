"""Evidently peer for bench/drift.py: DataDriftPreset's dataset drift rule with its defaults.

Runs in bench/.venvs/evidently: `python drift_evidently.py TASKDIR` (see drift_worker.py).
Default rule: every column gets Evidently's auto-selected test and threshold (for a 5,000-row
reference: normed Wasserstein distance >= 0.1 for numeric columns, Jensen-Shannon distance
>= 0.1 for categorical ones); the dataset drifts when the share of drifted columns is >= 0.5
(`drift_share`, the test DriftedColumnsCount attaches by default). Column types are declared,
as a user with a schema would.

Two ways to get that decision, both timed:
- "preset": `Report([DataDriftPreset()]).run(...)`, the documented path. Every run also
  renders plotly widgets for each column (~90% of its time), so it costs seconds per window.
- "metric": the legacy `Report(metrics=[DatasetDriftMetric()])`, the very calculation the
  preset's DriftedColumnsCount delegates to (same options, same 0.5 share), without widgets.
The detection figures come from "metric" (the preset would take hours at bench repetitions);
the worker checks on the first windows that both give the same decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found]
from evidently.legacy.metrics import DatasetDriftMetric  # type: ignore[import-not-found]
from evidently.legacy.pipeline.column_mapping import (  # type: ignore[import-not-found]
    ColumnMapping,
)
from evidently.legacy.report import Report as LegacyReport  # type: ignore[import-not-found]
from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from bench.peers import drift_worker
else:  # run as a script: this folder is on sys.path
    import drift_worker

DRIFT_SHARE = 0.5  # DataDriftPreset's and DatasetDriftMetric's default


def fit_preset(reference: pd.DataFrame, categorical: list[str]) -> drift_worker.Check:
    definition = DataDefinition(
        numerical_columns=[c for c in reference.columns if c not in categorical],
        categorical_columns=categorical,
    )
    ref = Dataset.from_pandas(reference, data_definition=definition)
    report = Report([DataDriftPreset()])

    def check(window: pd.DataFrame) -> tuple[bool, float]:
        current = Dataset.from_pandas(window, data_definition=definition)
        snapshot = report.run(current_data=current, reference_data=ref)
        # The preset's first metric is DriftedColumnsCount: {"count": n, "share": s}.
        share = float(snapshot.dict()["metrics"][0]["value"]["share"])
        return share >= DRIFT_SHARE, share

    return check


def fit_metric(reference: pd.DataFrame, categorical: list[str]) -> drift_worker.Check:
    mapping = ColumnMapping(
        numerical_features=[c for c in reference.columns if c not in categorical],
        categorical_features=categorical,
    )

    def check(window: pd.DataFrame) -> tuple[bool, float]:
        report = LegacyReport(metrics=[DatasetDriftMetric()])
        report.run(reference_data=reference, current_data=window, column_mapping=mapping)
        result = report.as_dict()["metrics"][0]["result"]
        return bool(result["dataset_drift"]), float(result["share_of_drifted_columns"])

    return check


if __name__ == "__main__":
    drift_worker.run(
        {"metric": fit_metric, "preset": fit_preset},
        ["evidently", "pandas", "numpy", "scipy"],
    )
