"""Drift of logged predictions against a version's reference data, with histograms to draw.

    view = drift_view(reference, events)   # the reference table, the prediction log's rows

The features are the reference columns the log holds: `input.<name>` (or `output.<name>`,
for prediction drift) in the prediction log, or `<name>` in a plain table. Reference columns
the log lacks (a label, an id) are listed as not logged. Each feature gets the detector's
test (DriftDetector: Holm-corrected over the family) and two histograms on the same bins:
numeric features on equal-width bins spanning both sides' 0.5-99.5 % range, values beyond it
counted in the outer bins; categorical ones on the reference's most frequent categories, the
live side's new ones, and one "(other)" bin for the rest. Missing values are in neither
histogram (the test counts them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.monitoring.detector import DEFAULT_ALPHA, DriftDetector, column_kind, numeric_values
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX, OUTPUT_PREFIX
from shipyard.monitoring.result import FeatureDrift

BINS = 20
MAX_CATEGORIES = 12
MAX_NEW_CATEGORIES = 3  # categories the reference never had, shown apart from "(other)"
OTHER = "(other)"
TAIL = 0.005  # histogram range: both sides' TAIL..1-TAIL quantiles


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts per bin of both sides: `edges` (len bins + 1) for numeric features,
    `categories` (one per bin) for categorical ones."""

    reference: list[int]
    live: list[int]
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FeatureView:
    test: FeatureDrift  # statistic, p-value (raw and Holm-adjusted), drift, summary
    histogram: Histogram


@dataclass(frozen=True, slots=True)
class DriftView:
    drift: bool  # any feature (or the joint test) drifted at `alpha`, Holm-corrected
    p_value: float  # the smallest adjusted p-value
    alpha: float
    n_reference: int
    n_live: int
    features: list[FeatureView]  # in reference column order
    multivariate: FeatureDrift | None  # the numeric features jointly
    not_logged: list[str]  # reference columns the log does not hold
    skipped: dict[str, str]  # feature -> why it was not tested (e.g. its type)


def live_columns(reference: pd.DataFrame, events: pd.DataFrame) -> dict[str, str]:
    """Reference column -> the events column holding it (input first, then output, then plain)."""
    present = {str(c) for c in events.columns}
    found: dict[str, str] = {}
    for name in map(str, reference.columns):
        for candidate in (INPUT_PREFIX + name, OUTPUT_PREFIX + name, name):
            if candidate in present:
                found[name] = candidate
                break
    return found


def drift_view(
    reference: pd.DataFrame,
    events: pd.DataFrame,
    *,
    alpha: float = DEFAULT_ALPHA,
    bins: int = BINS,
) -> DriftView:
    """Test and histogram every reference feature the events hold (see the module doc)."""
    if not 2 <= bins <= 200:
        raise InvalidArgument(f"bins must be between 2 and 200, got {bins}")
    if len(reference) == 0:
        raise FailedPrecondition("the reference data has no rows")
    if len(events) == 0:
        raise FailedPrecondition("there are no logged rows to compare")
    reference = reference.rename(columns=str)
    mapping = live_columns(reference, events)
    if not mapping:
        raise FailedPrecondition(
            "none of the reference columns appear in the logged predictions "
            f"(reference: {', '.join(list(reference.columns)[:10])})"
        )
    names = list(mapping)
    live = pd.DataFrame({name: events[column].to_numpy() for name, column in mapping.items()})
    detector = DriftDetector.fit(reference[names], alpha=alpha)
    result = detector.check(live)
    features = [
        FeatureView(test, _histogram(reference[name], live[name], bins))
        for name, test in result.features.items()
    ]
    return DriftView(
        drift=result.drift,
        p_value=result.p_value,
        alpha=result.alpha,
        n_reference=len(reference),
        n_live=result.n_rows,
        features=features,
        multivariate=result.multivariate,
        not_logged=[str(c) for c in reference.columns if str(c) not in mapping],
        skipped=dict(result.skipped),
    )


def _histogram(reference: pd.Series, live: pd.Series, bins: int) -> Histogram:
    if column_kind(reference) == "numeric":
        return numeric_histogram(numeric_values(reference), numeric_values(live), bins)
    return categorical_histogram(reference, live)


def numeric_histogram(reference: np.ndarray, live: np.ndarray, bins: int) -> Histogram:
    ref, win = reference[np.isfinite(reference)], live[np.isfinite(live)]
    both = [side for side in (ref, win) if side.size]
    if not both:
        return Histogram(reference=[], live=[])
    lo = min(float(np.quantile(side, TAIL)) for side in both)
    hi = max(float(np.quantile(side, 1.0 - TAIL)) for side in both)
    if not hi > lo:  # constant: one unit-wide range around the value
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def counts(values: np.ndarray) -> list[int]:
        # Clipped, so the outer bins hold the tails beyond the drawn range.
        found, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
        return [int(c) for c in found]

    return Histogram(counts(ref), counts(win), edges=[float(e) for e in edges])


def categorical_histogram(reference: pd.Series, live: pd.Series) -> Histogram:
    ref = reference.dropna().astype(str).value_counts()
    win = live.dropna().astype(str).value_counts()
    kept = [str(k) for k in ref.index[:MAX_CATEGORIES]]
    new = [str(k) for k in win.index if k not in ref.index][:MAX_NEW_CATEGORIES]
    categories = kept + new
    ref_counts = [int(ref.get(k, 0)) for k in categories]
    win_counts = [int(win.get(k, 0)) for k in categories]
    rest_ref, rest_win = int(ref.sum()) - sum(ref_counts), int(win.sum()) - sum(win_counts)
    if rest_ref or rest_win:
        categories.append(OTHER)
        ref_counts.append(rest_ref)
        win_counts.append(rest_win)
    return Histogram(ref_counts, win_counts, categories=categories)
