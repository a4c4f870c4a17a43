"""NannyML peer for bench/drift.py: UnivariateDriftCalculator with its defaults.

Runs in bench/.venvs/nannyml: `python drift_nannyml.py TASKDIR` (see drift_worker.py).
Default rule (0.13.1): Jensen-Shannon distance for continuous and categorical columns, each
with the default StandardDeviationThreshold (alert above mean + 3 std of the distance over the
reference's own chunks, no lower bound); the window alarms when any column alerts. The
calculator is fitted on the reference once per window size with chunk_size = the window's
rows, so each window is one analysis chunk (the default chunker would cut it into 10); the
fit is kept between windows, as a user keeps a fitted calculator. With a 5,000-row window the
reference is a single chunk: its spread is 0 and the threshold is its in-sample distance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import nannyml as nml  # type: ignore[import-not-found]
import pandas as pd

if TYPE_CHECKING:
    from bench.peers import drift_worker
else:  # run as a script: this folder is on sys.path
    import drift_worker


def fit(reference: pd.DataFrame, categorical: list[str]) -> drift_worker.Check:
    fitted: dict[int, Any] = {}

    def check(window: pd.DataFrame) -> tuple[bool, float]:
        calc = fitted.get(len(window))
        if calc is None:
            calc = nml.UnivariateDriftCalculator(
                column_names=list(reference.columns),
                treat_as_categorical=categorical,
                chunk_size=len(window),
            ).fit(reference)
            fitted[len(window)] = calc
        frame = calc.calculate(window).filter(period="analysis").to_df()
        # Columns are (column, method, key); key "alert" is the per-column default rule.
        alerts = frame.xs("alert", axis=1, level=2).to_numpy(dtype=bool)
        alerted = int(alerts.any(axis=0).sum())
        return alerted > 0, float(alerted)

    return check


if __name__ == "__main__":
    drift_worker.run({"univariate": fit}, ["nannyml", "pandas", "numpy", "scipy"])
