"""The report's plots as inline SVG, drawn by matplotlib without pyplot (no global state, no
display): each function returns one `<svg>` element as text.

Reference distributions come from the detector's sketches, not from raw reference rows, so a
report needs only the stored profile: a numeric profile's cumulative counts at its quantile cut
points give the reference mass in any display bin by interpolation.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shipyard.monitoring.detector import numeric_values
from shipyard.monitoring.profiles import CategoricalProfile, NumericProfile
from shipyard.monitoring.report.series import Bucket

DISPLAY_BINS = 30
MAX_CATEGORIES = 12
REFERENCE_COLOR = "#8c8c8c"
WINDOW_COLOR = "#d62728"
P_FLOOR = 1e-16  # p-values below this are drawn at the floor of the log axis

# Same input, same bytes: matplotlib otherwise salts SVG ids randomly.
mpl.rcParams["svg.hashsalt"] = "shipyard"


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline in HTML


def numeric_distribution(name: str, profile: NumericProfile, window: pd.Series) -> str:
    figure = Figure(figsize=(4.2, 2.6))
    axes = figure.add_subplot()
    values = numeric_values(window)
    values = values[np.isfinite(values)]
    if profile.n_valid > 0:
        lo, hi = profile.quantile(0.005), profile.quantile(0.995)
        if values.size:
            lo, hi = (
                min(lo, float(np.quantile(values, 0.005))),
                max(hi, float(np.quantile(values, 0.995))),
            )
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, DISPLAY_BINS + 1)
        cum = np.interp(edges, profile.cuts, profile.cum.astype(np.float64), left=0.0)
        reference = np.diff(cum) / profile.n_valid
        window_share = np.histogram(values, bins=edges)[0] / max(values.size, 1)
        axes.stairs(
            reference, edges, fill=True, color=REFERENCE_COLOR, alpha=0.5, label="reference"
        )
        axes.stairs(window_share, edges, color=WINDOW_COLOR, linewidth=1.5, label="window")
        axes.legend(fontsize=7)
    axes.set_title(name, fontsize=9)
    axes.set_ylabel("share of rows", fontsize=7)
    axes.tick_params(labelsize=7)
    return _svg(figure)


def categorical_distribution(name: str, profile: CategoricalProfile, window: pd.Series) -> str:
    figure = Figure(figsize=(4.2, 2.6))
    axes = figure.add_subplot()
    observed = window.dropna().astype(str).value_counts()
    keys = list(profile.counts)[:MAX_CATEGORIES]
    keys += [k for k in observed.index[:MAX_CATEGORIES] if k not in keys][
        : MAX_CATEGORIES - len(keys) + 3
    ]
    total_ref, total_win = max(profile.n_valid, 1), max(int(observed.sum()), 1)
    reference = [profile.counts.get(k, 0) / total_ref for k in keys]
    shares = [int(observed.get(k, 0)) / total_win for k in keys]
    x = np.arange(len(keys))
    axes.bar(x - 0.2, reference, width=0.4, color=REFERENCE_COLOR, label="reference")
    axes.bar(x + 0.2, shares, width=0.4, color=WINDOW_COLOR, label="window")
    axes.set_xticks(x, [k[:12] for k in keys], rotation=45, ha="right", fontsize=7)
    axes.set_title(name, fontsize=9)
    axes.set_ylabel("share of rows", fontsize=7)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7)
    return _svg(figure)


def _x(buckets: list[Bucket]) -> tuple[list[Any], str]:
    if buckets and buckets[0].end is not None:
        return [b.end for b in buckets], "window end (UTC)"
    return list(range(1, len(buckets) + 1)), "window"


def drift_over_time(buckets: list[Bucket], alpha: float, max_lines: int = 8) -> str:
    figure = Figure(figsize=(8.5, 3.2))
    axes = figure.add_subplot()
    x, xlabel = _x(buckets)
    names = list(buckets[0].drift.features) if buckets else []
    # The features that came closest to drifting are the ones worth a line.
    lowest = {n: min(b.drift.features[n].p_value for b in buckets) for n in names}
    for name in sorted(names, key=lambda n: lowest[n])[:max_lines]:
        p = [max(b.drift.features[name].p_value, P_FLOOR) for b in buckets]
        axes.plot(x, p, marker="o", markersize=3, label=name, zorder=2)
    overall = [max(b.drift.p_value, P_FLOOR) for b in buckets]
    # Underneath the features (zorder), so a feature at the floor is not hidden by it.
    axes.plot(x, overall, color="black", linewidth=2.5, label="overall (Holm-adjusted)", zorder=1)
    axes.axhline(alpha, color=WINDOW_COLOR, linestyle="--", linewidth=1, label=f"alpha {alpha:g}")
    axes.set_yscale("log")
    axes.set_ylim(P_FLOOR / 2, 1.5)
    axes.set_ylabel("p-value (log)", fontsize=8)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7, loc="lower left", ncol=3)
    figure.autofmt_xdate()
    return _svg(figure)


def performance_over_time(buckets: list[Bucket], metrics: list[str]) -> str:
    figure = Figure(figsize=(8.5, 3.0))
    axes = figure.add_subplot()
    x, xlabel = _x(buckets)
    for kind in ("realised", "estimated"):
        for metric in metrics:
            series = [_value(getattr(b, kind), metric) for b in buckets]
            if all(math.isnan(v) for v in series):
                continue
            style = "-" if kind == "realised" else ":"
            axes.plot(x, series, style, marker="o", markersize=3, label=f"{kind} {metric}")
    axes.set_xlabel(xlabel, fontsize=8)
    axes.tick_params(labelsize=7)
    if axes.lines:
        axes.legend(fontsize=7, ncol=2)
    figure.autofmt_xdate()
    return _svg(figure)


def _value(performance: object, metric: str) -> float:
    metrics = getattr(performance, "metrics", None) or {}
    value = metrics.get(metric)
    return math.nan if value is None else float(value)
