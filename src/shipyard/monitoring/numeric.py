"""Numeric features: a window accumulator on the reference's cells and the two-sample test.

The test is the k=2 Anderson-Darling statistic of Scholz & Stephens (1987), midrank version for
tied data, computed from cell counts (the reference's cells are its own quantiles, so nothing is
lost but the order inside a cell). AD weighs the tails, so it beats KS on scale and tail shifts
and matches it on location shifts. A change in the share of missing values is tested too
(2x2 chi-square) whenever either side has missing values; the two p-values are Bonferroni-combined.
"""

from __future__ import annotations

import math

import numpy as np

from shipyard.monitoring.profiles import Floats, Ints, NumericProfile, cell_counts_of
from shipyard.monitoring.pvalues import anderson_darling_sf, chi2_sf
from shipyard.monitoring.result import FeatureDrift

_QUARTILES = np.array([0.25, 0.5, 0.75])


class NumericWindow:
    """Bounded state of one numeric feature in a window: counts per reference cell."""

    def __init__(self, profile: NumericProfile) -> None:
        self.profile = profile
        self.counts: Ints = np.zeros(profile.cuts.size + 1, dtype=np.int64)
        self.n_valid = 0  # counts.sum(), kept as it grows (result reads it often)
        self.n_missing = 0
        self.low = math.inf
        self.high = -math.inf

    def update(self, values: Floats) -> None:
        finite = values[np.isfinite(values)]
        self.n_missing += int(values.size - finite.size)
        if finite.size == 0:
            return
        ordered = np.sort(finite)
        self.counts += cell_counts_of(self.profile.cuts, ordered)
        self.n_valid += int(finite.size)
        self.low = min(self.low, float(ordered[0]))
        self.high = max(self.high, float(ordered[-1]))

    def quantile(self, q: float) -> float:
        """Window quantile, interpolated inside reference cells (outer cells end at min/max)."""
        return float(self.quantiles(np.array([q]))[0])

    def quantiles(self, qs: Floats) -> Floats:
        if self.n_valid == 0:
            return np.full(qs.shape, np.nan)
        cuts = self.profile.cuts
        if cuts.size == 0:  # the reference had no values: one cell spanning the window
            return self.low + qs * (self.high - self.low)
        edges = np.concatenate(([min(self.low, cuts[0])], cuts, [max(self.high, cuts[-1])]))
        cum = np.concatenate(([0], np.cumsum(self.counts))).astype(np.float64)
        return np.interp(qs * self.n_valid, cum, edges)


def anderson_darling(ref: Ints, win: Ints) -> float:
    """Two-sample A^2 (midrank, ties allowed) from counts per ordered cell."""
    n1, n2 = int(ref.sum()), int(win.sum())
    n = n1 + n2
    tied = (ref + win).astype(np.float64)
    keep = tied > 0
    f1, ell = ref[keep].astype(np.float64), tied[keep]
    b_mid = np.cumsum(ell) - ell / 2.0
    m1_mid = np.cumsum(f1) - f1 / 2.0
    denom = b_mid * (n - b_mid) - n * ell / 4.0
    ok = denom > 0
    num = (n * m1_mid[ok] - n1 * b_mid[ok]) ** 2 * (1.0 / n1 + 1.0 / n2)
    return float((n - 1.0) / n * np.sum(ell[ok] / n * num / denom[ok]))


def beyond_range_p(k: int, m: int, n: int) -> float:
    """P(at least k of m window values lie beyond the extreme of n reference values), exact.

    Under no shift every order of the m + n values is equally likely, so this is the chance that
    the k most extreme of them all come from the window: m!/(m-k)! / ((m+n)!/(m+n-k)!).
    AD under-weights a few values far outside the reference range; this test does not.
    """
    if k <= 0:
        return 1.0
    log_p = (
        math.lgamma(m + 1)
        - math.lgamma(m - k + 1)
        - math.lgamma(m + n + 1)
        + math.lgamma(m + n - k + 1)
    )
    return math.exp(log_p)


def missing_share_p(ref_missing: int, ref_n: int, win_missing: int, win_n: int) -> float:
    """2x2 chi-square on missing vs present (p = 1 when there is nothing to compare)."""
    table = np.array([[ref_missing, ref_n - ref_missing], [win_missing, win_n - win_missing]])
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    if rows.min() == 0 or cols.min() == 0:
        return 1.0
    expected = np.outer(rows, cols) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return chi2_sf(stat, 1)


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.4g}"


def _summary(profile: NumericProfile, window: NumericWindow, ref_n: int, win_n: int) -> str:
    (ref_q1, ref_median, ref_q3), (q1, median, q3) = (
        x.quantiles(_QUARTILES) for x in (profile, window)
    )
    parts = [
        f"median {_fmt(ref_median)} → {_fmt(median)}",
        f"IQR {_fmt(ref_q3 - ref_q1)} → {_fmt(q3 - q1)}",
    ]
    below, above = int(window.counts[0]), int(window.counts[-1])
    if profile.n_valid and (below or above):
        parts.append(
            f"{below} below the reference min {_fmt(profile.minimum())}, "
            f"{above} above its max {_fmt(profile.quantile(1.0))}"
        )
    if profile.n_missing or window.n_missing:
        parts.append(
            f"missing {profile.n_missing / max(ref_n, 1):.1%} → {window.n_missing / win_n:.1%}"
        )
    if profile.n_valid == 0:
        parts.append("no values in reference")
    elif profile.cuts.size == 2:
        parts.append("constant in reference")
    if window.n_valid == 0:
        parts.append("no values in window")
    return "; ".join(parts)


def numeric_drift(name: str, profile: NumericProfile, window: NumericWindow) -> FeatureDrift:
    ref_n = profile.n_valid + profile.n_missing
    win_n = window.n_valid + window.n_missing
    a2 = 0.0
    p_values = [1.0]
    if profile.n_valid >= 2 and window.n_valid >= 2:
        a2 = anderson_darling(profile.cell_counts(), window.counts)
        below, above = int(window.counts[0]), int(window.counts[-1])
        m, n = window.n_valid, profile.n_valid
        p_values = [
            anderson_darling_sf(a2, n, m),
            2.0 * min(beyond_range_p(below, m, n), beyond_range_p(above, m, n)),
        ]
    test = "anderson-darling + range"
    if profile.n_missing or window.n_missing:
        p_values.append(missing_share_p(profile.n_missing, ref_n, window.n_missing, win_n))
        test += " + missing-share chi-square"
    # Bonferroni inside the feature: the Holm family then sees one p-value per feature.
    p = min(1.0, len(p_values) * min(p_values))
    return FeatureDrift(
        name=name,
        kind="numeric",
        test=test,
        statistic=a2,
        p_value=p,
        summary=_summary(profile, window, ref_n, win_n),
        n_reference=ref_n,
        n_window=win_n,
    )
