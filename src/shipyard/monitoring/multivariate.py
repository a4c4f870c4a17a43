"""Multivariate drift: PCA reconstruction error, calibrated out of sample.

Per-feature tests cannot see a change that only moves correlations. A PCA fitted on the reference
captures its correlation structure; rows from a world with other correlations reconstruct worse.
The PCA is fitted on half of the reference and the other half's errors form the null profile, so
reference and window errors are both out of sample (in-sample errors would be optimistically
small and alarm on every window). The window's errors are compared with a one-sided
Mann-Whitney test (window errors larger), computed on the null profile's cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shipyard.monitoring.profiles import Floats, Ints, NumericProfile, cell_counts_of
from shipyard.monitoring.pvalues import normal_sf
from shipyard.monitoring.result import FeatureDrift

MIN_ROWS = 40  # below this the held-out half is too small to calibrate anything
EXPLAINED = 0.65  # keep components up to this share of variance (the rest is the "error")
SPLIT_SEED = 20_240_611  # fixed: the same reference always gives the same profile


@dataclass(frozen=True)
class MultivariateProfile:
    columns: list[str]
    center: Floats
    scale: Floats
    components: Floats  # d x k, orthonormal columns
    null_errors: NumericProfile  # held-out (out-of-sample) reconstruction errors
    n_fit: int

    @classmethod
    def fit(cls, columns: list[str], matrix: Floats) -> MultivariateProfile | None:
        """None when there are too few rows or fewer than two usable columns."""
        n, d = matrix.shape
        if n < MIN_ROWS or d < 2:
            return None
        order = np.random.default_rng(SPLIT_SEED).permutation(n)
        fit_rows, held_rows = matrix[order[: n // 2]], matrix[order[n // 2 :]]
        center = np.nan_to_num(np.nanmean(fit_rows, axis=0))
        scale = np.nan_to_num(np.nanstd(fit_rows, axis=0))
        scale[scale == 0] = 1.0
        z = _standardise(fit_rows, center, scale)
        _, sing, vt = np.linalg.svd(z, full_matrices=False)
        share = np.cumsum(sing**2) / max(float(np.sum(sing**2)), 1e-300)
        k = min(int(np.searchsorted(share, EXPLAINED)) + 1, d - 1)
        components = np.ascontiguousarray(vt[:k].T)
        held = _errors(held_rows, center, scale, components)
        return cls(columns, center, scale, components, NumericProfile.fit(held), n // 2)

    def errors(self, matrix: Floats) -> Floats:
        return _errors(matrix, self.center, self.scale, self.components)

    def merge(self, other: MultivariateProfile) -> MultivariateProfile:
        # Bases cannot be averaged; keep the better-estimated one. Replicas that see the same
        # distribution have near-identical bases, so their null error profiles merge cleanly.
        base = self if self.n_fit >= other.n_fit else other
        return MultivariateProfile(
            base.columns,
            base.center,
            base.scale,
            base.components,
            self.null_errors.merge(other.null_errors),
            self.n_fit + other.n_fit,
        )


def _standardise(matrix: Floats, center: Floats, scale: Floats) -> Floats:
    z: Floats = matrix - center  # the one copy; the rest works in place
    z /= scale
    # Missing (and infinite) -> the reference mean. Masking every window costs ~8x the
    # arithmetic (bench/drift.py's cost table), and most windows have nothing to mask.
    if not np.isfinite(z).all():
        z[~np.isfinite(z)] = 0.0
    return z


def _errors(matrix: Floats, center: Floats, scale: Floats, components: Floats) -> Floats:
    z = _standardise(matrix, center, scale)
    projected = z @ components
    residual = np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", projected, projected)
    errors: Floats = np.sqrt(np.maximum(residual, 0.0))
    return errors


def mann_whitney_greater(ref: Ints, win: Ints) -> tuple[float, float]:
    """One-sided Mann-Whitney (window larger) from counts per ordered cell -> (z, p)."""
    n1, n2 = float(ref.sum()), float(win.sum())
    n = n1 + n2
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    ref_below = np.cumsum(ref) - ref
    u = float(np.sum(win * (ref_below + ref / 2.0)))  # pairs with window > reference, ties 1/2
    ties = (ref + win).astype(np.float64)
    tie_term = float(np.sum(ties**3 - ties)) / (n * (n - 1.0))
    var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term)
    if var <= 0:
        return 0.0, 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return z, normal_sf(z)


class MultivariateWindow:
    def __init__(self, profile: MultivariateProfile) -> None:
        self.profile = profile
        self.counts: Ints = np.zeros(profile.null_errors.cuts.size + 1, dtype=np.int64)
        self.sum_errors = 0.0

    def update(self, matrix: Floats) -> None:
        errors = self.profile.errors(matrix)
        self.counts += cell_counts_of(self.profile.null_errors.cuts, np.sort(errors))
        self.sum_errors += float(errors.sum())

    def test(self) -> FeatureDrift:
        ref = self.profile.null_errors.cell_counts()
        z, p = mann_whitney_greater(ref, self.counts)
        n_win = int(self.counts.sum())
        ref_errors = self.profile.null_errors
        mean_ref = float(np.sum(np.diff(ref_errors.cum) * _mid(ref_errors.cuts))) / max(
            ref_errors.n_valid, 1
        )
        summary = (
            f"PCA reconstruction error mean {mean_ref:.3g} → {self.sum_errors / max(n_win, 1):.3g}"
            f" over {len(self.profile.columns)} numeric features (joint structure changed)"
        )
        return FeatureDrift(
            name="(multivariate)",
            kind="multivariate",
            test="pca-error mann-whitney",
            statistic=z,
            p_value=p,
            summary=summary,
            n_reference=ref_errors.n_valid,
            n_window=n_win,
        )


def _mid(cuts: Floats) -> Floats:
    return (cuts[1:] + cuts[:-1]) / 2.0
