"""Null distributions the drift tests need, in numpy + math only (no scipy at runtime).

Each function returns an upper-tail probability (a p-value) computed so that tiny p-values stay
accurate (no `1 - cdf` cancellation), because they are multiplied by the number of tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

# Variance of the asymptotic Anderson-Darling distribution, sum 2/(j(j+1))^2 = 2(pi^2 - 9)/3.
_AD_INF_VAR = 2.0 * (math.pi**2 - 9.0) / 3.0


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df), exact for integer df (finite series, no tables)."""
    if df <= 0:
        return 1.0
    if x <= 0.0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        # Poisson identity: Q(m, x/2) = e^{-x/2} sum_{i<m} (x/2)^i / i!
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    # Odd df: erfc part plus a series in (x/2)^{i+1/2} / Gamma(i + 3/2).
    total = math.erfc(math.sqrt(half))
    term = math.sqrt(half) / math.gamma(1.5)
    series = 0.0
    for i in range((df - 1) // 2):
        if i > 0:
            term *= half / (i + 0.5)
        series += term
    return min(1.0, total + math.exp(-half) * series)


def _ad_inf_sf(z: float) -> float:
    """Upper tail of the asymptotic Anderson-Darling law (Marsaglia & Marsaglia 2004, ~1e-6)."""
    if z <= 0.0:
        return 1.0
    if z < 2.0:
        poly = (
            2.00012
            + (0.247105 - (0.0649821 - (0.0347962 - (0.011672 - 0.00168691 * z) * z) * z) * z) * z
        )
        return 1.0 - math.exp(-1.2337141 / z) / math.sqrt(z) * poly
    inner = 1.0776 - (2.30695 - (0.43424 - (0.082433 - (0.008056 - 0.0003146 * z) * z) * z) * z) * z
    return -math.expm1(-math.exp(inner))


@functools.lru_cache(maxsize=256)
def _ad_variance(n1: int, n2: int) -> float:
    """Finite-sample variance of the 2-sample A^2 (Scholz & Stephens 1987, eq. 4 with k=2)."""
    n = n1 + n2
    k = 2.0
    h_big = 1.0 / n1 + 1.0 / n2
    # h = sum_{i<N} 1/i; g = sum_{i<=N-2} sum_{i<j<N} 1/((N-i) j), in O(N) via partial sums.
    harm = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, n, dtype=np.float64))))
    h = float(harm[n - 1])
    i = np.arange(1, n - 1)
    g = float(np.sum((h - harm[i]) / (n - i)))
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * h_big
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * h_big - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * h_big + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    return float((a * n**3 + b * n**2 + c * n + d) / ((n - 1.0) * (n - 2.0) * (n - 3.0)))


def anderson_darling_sf(a2: float, n1: int, n2: int) -> float:
    """p-value of a 2-sample Anderson-Darling statistic, standardised with its finite-N variance."""
    if n1 < 2 or n2 < 2:
        return 1.0
    var = _ad_variance(n1, n2)
    t = (a2 - 1.0) / math.sqrt(max(var, 1e-12))
    return _ad_inf_sf(1.0 + t * math.sqrt(_AD_INF_VAR))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (monotone, capped at 1), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
