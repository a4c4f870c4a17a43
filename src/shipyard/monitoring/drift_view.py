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

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.monitoring.detector import (
    DEFAULT_ALPHA,
    DriftDetector,
    Window,
    column_kind,
    numeric_values,
)
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX, OUTPUT_PREFIX
from shipyard.monitoring.result import FeatureDrift

BINS = 20
MAX_CATEGORIES = 12
MAX_NEW_CATEGORIES = 3  # categories the reference never had, shown apart from "(other)"
OTHER = "(other)"
MAX_TRACKED_NEW = 1000  # distinct unseen categories counted to pick the shown ones
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
    return drift_view_of(reference, lambda: (events,), alpha=alpha, bins=bins)


class NoLiveRows(FailedPrecondition):
    """The window held no logged rows."""


def drift_view_of(
    reference: pd.DataFrame,
    chunks: Callable[[], Iterable[pd.DataFrame]],
    *,
    alpha: float = DEFAULT_ALPHA,
    bins: int = BINS,
) -> DriftView:
    """`drift_view` of a window of any size, read twice as `chunks()` (each call the same
    chunks: `iter_events` pages over a fixed interval): the first pass feeds the detector's
    window and finds the histograms' ranges, the second counts the live histograms. Memory
    is one chunk plus the sketches. The features are the reference columns the newest chunk
    holds; a chunk without one of them counts its rows as missing values."""
    if not 2 <= bins <= 200:
        raise InvalidArgument(f"bins must be between 2 and 200, got {bins}")
    if len(reference) == 0:
        raise FailedPrecondition("the reference data has no rows")
    reference = reference.rename(columns=str)
    mapping: dict[str, str] = {}
    window: Window | None = None
    histograms: _Histograms | None = None
    for chunk in chunks():
        if len(chunk) == 0:
            continue
        if window is None or histograms is None:
            mapping = _mapping(reference, chunk)
            window = DriftDetector.fit(reference[list(mapping)], alpha=alpha).window()
            histograms = _Histograms(reference[list(mapping)], bins)
        live = _live(chunk, mapping)
        window.update(live)
        histograms.scan(live)
    if window is None or histograms is None:
        raise NoLiveRows("there are no logged rows to compare")
    histograms.set_ranges(window)
    for chunk in chunks():
        if len(chunk):
            histograms.count(_live(chunk, mapping))
    result = window.result()
    features = [
        FeatureView(test, histograms.histogram(name)) for name, test in result.features.items()
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


def _mapping(reference: pd.DataFrame, events: pd.DataFrame) -> dict[str, str]:
    mapping = live_columns(reference, events)
    if not mapping:
        raise FailedPrecondition(
            "none of the reference columns appear in the logged predictions "
            f"(reference: {', '.join(list(reference.columns)[:10])})"
        )
    return mapping


def _live(chunk: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            name: chunk[column].to_numpy() if column in chunk.columns else np.nan
            for name, column in mapping.items()
        },
        index=pd.RangeIndex(len(chunk)),
    )


class _Histograms:
    """Both sides' histograms per feature, built over two passes of the live chunks."""

    def __init__(self, reference: pd.DataFrame, bins: int) -> None:
        self.reference = reference
        self.bins = bins
        self.numeric = [n for n in reference.columns if column_kind(reference[n]) == "numeric"]
        self.edges: dict[str, np.ndarray] = {}
        self.live_counts: dict[str, np.ndarray] = {}
        # Categorical: the live side's counts of categories the reference lacks (first pass,
        # bounded), then exact counts of the shown categories (second pass).
        self.new: dict[str, Counter[str]] = {
            n: Counter() for n in reference.columns if n not in self.numeric
        }
        self.shown: dict[str, list[str]] = {}
        self.live_shown: dict[str, Counter[str]] = {n: Counter() for n in self.new}
        self.live_total: Counter[str] = Counter()
        # The reference side's category counts, computed once (every chunk asks for them).
        self.reference_counts = {
            n: reference[n].dropna().astype(str).value_counts() for n in self.new
        }

    def scan(self, live: pd.DataFrame) -> None:
        for name, seen in self.new.items():
            known = self.reference_counts[name].index
            for key, count in live[name].dropna().astype(str).value_counts().items():
                if key not in known and (key in seen or len(seen) < MAX_TRACKED_NEW):
                    seen[str(key)] += int(count)

    def set_ranges(self, window: Window) -> None:
        for name in self.numeric:
            ref = numeric_values(self.reference[name])
            ref = ref[np.isfinite(ref)]
            lows, highs = [], []
            if ref.size:
                lows.append(float(np.quantile(ref, TAIL)))
                highs.append(float(np.quantile(ref, 1.0 - TAIL)))
            low, high = window.quantile(name, TAIL), window.quantile(name, 1.0 - TAIL)
            if np.isfinite(low) and np.isfinite(high):
                lows.append(low)
                highs.append(high)
            if not lows:
                continue
            lo, hi = min(lows), max(highs)
            # Constant (up to the sketch's rounding): one unit-wide range around the value,
            # the reference's exact one when it has values.
            if not hi > lo or np.isclose(lo, hi, rtol=1e-9, atol=1e-12):
                lo, hi = lows[0] - 0.5, lows[0] + 0.5
            self.edges[name] = np.linspace(lo, hi, self.bins + 1)
            self.live_counts[name] = np.zeros(self.bins, dtype=np.int64)
        for name, seen in self.new.items():
            kept = [str(k) for k in self.reference_counts[name].index[:MAX_CATEGORIES]]
            self.shown[name] = kept + [k for k, _ in seen.most_common(MAX_NEW_CATEGORIES)]

    def count(self, live: pd.DataFrame) -> None:
        for name, edges in self.edges.items():
            values = numeric_values(live[name])
            self.live_counts[name] += _binned(values[np.isfinite(values)], edges)
        for name, shown in self.shown.items():
            counts = live[name].dropna().astype(str).value_counts()
            self.live_total[name] += int(counts.sum())
            self.live_shown[name].update({k: int(counts.get(k, 0)) for k in shown})

    def histogram(self, name: str) -> Histogram:
        if name in self.numeric:
            edges = self.edges.get(name)
            if edges is None:
                return Histogram(reference=[], live=[])
            ref = numeric_values(self.reference[name])
            return Histogram(
                [int(c) for c in _binned(ref[np.isfinite(ref)], edges)],
                [int(c) for c in self.live_counts[name]],
                edges=[float(e) for e in edges],
            )
        seen = self.reference_counts[name]
        categories = list(self.shown[name])
        ref_counts = [int(seen.get(k, 0)) for k in categories]
        win_counts = [self.live_shown[name][k] for k in categories]
        rest_ref = int(seen.sum()) - sum(ref_counts)
        rest_win = self.live_total[name] - sum(win_counts)
        if rest_ref or rest_win:
            categories.append(OTHER)
            ref_counts.append(rest_ref)
            win_counts.append(rest_win)
        return Histogram(ref_counts, win_counts, categories=categories)


def _binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Clipped, so the outer bins hold the tails beyond the drawn range.
    found, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return found.astype(np.int64)
