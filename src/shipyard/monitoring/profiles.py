"""Profiles: bounded, mergeable sketches of one reference feature.

NumericProfile is a quantile sketch: up to `BINS + 2` cut points t_0 < ... < t_K with the exact
cumulative count C_i = #{x <= t_i} at fit time (t_0 sits just below the minimum, t_K is the
maximum). Because the cut points are the reference's own quantiles, the reference CDF is exact at
every cut point; a window is compared on the same cells, so the only approximation is grouping
values inside one cell (1/BINS of the reference mass, i.e. <= 0.4% in rank). Merging picks new cut
points among the union of both inputs: each merge adds at most one input cell of rank error.
Memory: 2 x 8 bytes per cut point, ~4 KB in RAM, ~2.1 KB serialised (counts compress to nothing).

CategoricalProfile keeps the TOP_K most frequent categories exactly and pools the rest as "other"
(with how many distinct values were pooled), so huge cardinality costs O(TOP_K).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

BINS = 256
TOP_K = 64

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class NumericProfile:
    cuts: Floats  # strictly increasing; empty when the reference had no finite values
    cum: Ints  # cum[i] = #{x <= cuts[i]}; cum[0] == 0, cum[-1] == n_valid
    n_missing: int

    # Cached: a check reads them once per feature and window (the profile never changes).
    @cached_property
    def n_valid(self) -> int:
        return int(self.cum[-1]) if self.cum.size else 0

    @classmethod
    def fit(cls, values: Floats) -> NumericProfile:
        finite = values[np.isfinite(values)]
        n_missing = int(values.size - finite.size)
        if finite.size == 0:
            return cls(np.empty(0), np.empty(0, dtype=np.int64), n_missing)
        ordered = np.sort(finite)
        # Quantiles that are data values ("inverted_cdf") make the cumulative counts exact.
        qs = np.unique(np.quantile(ordered, np.linspace(0.0, 1.0, BINS + 1), method="inverted_cdf"))
        below = np.nextafter(ordered[0], -np.inf)
        cuts = np.concatenate(([below], qs))
        cum = np.searchsorted(ordered, cuts, side="right").astype(np.int64)
        return cls(cuts.astype(np.float64), cum, n_missing)

    def cell_counts(self) -> Ints:
        """Reference counts in the cells (-inf, t_0], (t_0, t_1], ..., (t_K, inf)."""
        return self._cell_counts

    @cached_property
    def _cell_counts(self) -> Ints:
        if self.cum.size == 0:
            counts = np.zeros(1, dtype=np.int64)
        else:
            counts = np.diff(self.cum, prepend=0, append=self.cum[-1]).astype(np.int64)
        counts.flags.writeable = False  # shared by every check
        return counts

    def minimum(self) -> float:
        """The smallest reference value: the first cut some values reach (quantile(0) would
        interpolate from the cut just below it, e.g. -5e-324 for a column of zeros)."""
        if self.n_valid == 0:
            return float("nan")
        return float(self.cuts[int(np.argmax(self.cum > 0))])

    def quantile(self, q: float) -> float:
        """Quantile by linear interpolation inside the cell (nan when there are no values)."""
        return float(self.quantiles(np.array([q]))[0])

    def quantiles(self, qs: Floats) -> Floats:
        if self.n_valid == 0:
            return np.full(qs.shape, np.nan)
        return np.interp(qs * self.n_valid, self.cum, self.cuts)

    def merge(self, other: NumericProfile) -> NumericProfile:
        if other.n_valid == 0 or self.n_valid == 0:
            base = self if other.n_valid == 0 else other
            return NumericProfile(base.cuts, base.cum, self.n_missing + other.n_missing)
        grid = np.union1d(self.cuts, other.cuts)
        total = _cum_at(self, grid) + _cum_at(other, grid)
        n = self.n_valid + other.n_valid
        if grid.size > BINS + 2:
            # Keep the union points closest (from above) to evenly spaced ranks.
            targets = np.linspace(0.0, n, BINS + 1)
            keep = np.unique(np.searchsorted(total, targets, side="left").clip(0, grid.size - 1))
            keep = np.unique(np.concatenate(([0], keep, [grid.size - 1])))
            grid, total = grid[keep], total[keep]
        # Round cumulatively so the total stays exact and counts stay non-negative integers.
        cum = np.maximum.accumulate(np.rint(total)).astype(np.int64)
        cum[0], cum[-1] = 0, n
        return NumericProfile(grid, cum, self.n_missing + other.n_missing)


def cell_counts_of(cuts: Floats, ordered: Floats) -> Ints:
    """Counts of sorted values in the cells (-inf, t_0], (t_0, t_1], ..., (t_K, inf).

    Sorting the window and binary-searching the ~258 cuts into it is ~10x faster than
    searching every value among the cuts (numpy's sort is vectorised, its search is branchy).
    """
    at_or_below = np.searchsorted(ordered, cuts, side="right")
    return np.diff(at_or_below, prepend=0, append=ordered.size).astype(np.int64)


def _cum_at(profile: NumericProfile, points: Floats) -> Floats:
    # Piecewise-linear CDF between cut points: exact at the profile's own cuts.
    return np.interp(points, profile.cuts, profile.cum.astype(np.float64), left=0.0)


@dataclass(frozen=True)
class CategoricalProfile:
    counts: dict[str, int]  # at most TOP_K categories, most frequent first
    other: int  # rows whose category was pooled
    other_distinct: int  # how many distinct categories were pooled (lower bound after merges)
    n_missing: int

    @property
    def n_valid(self) -> int:
        return sum(self.counts.values()) + self.other

    @classmethod
    def fit(cls, keys: list[str], counts: list[int], n_missing: int) -> CategoricalProfile:
        order = sorted(range(len(keys)), key=lambda i: (-counts[i], keys[i]))
        kept = {keys[i]: int(counts[i]) for i in order[:TOP_K]}
        pooled = [counts[i] for i in order[TOP_K:]]
        return cls(kept, int(sum(pooled)), len(pooled), n_missing)

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        union = dict(self.counts)
        for key, count in other.counts.items():
            union[key] = union.get(key, 0) + count
        merged = CategoricalProfile.fit(list(union), list(union.values()), 0)
        return CategoricalProfile(
            merged.counts,
            merged.other + self.other + other.other,
            merged.other_distinct + max(self.other_distinct, other.other_distinct),
            self.n_missing + other.n_missing,
        )
