"""Synthetic reference/window data with known shifts, shared by the drift tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

CATEGORIES = ["a", "b", "c", "d", "e", "f"]
CATEGORY_P = np.array([0.30, 0.25, 0.20, 0.15, 0.07, 0.03])
LOADINGS = np.random.default_rng(7).normal(size=(2, 6))

MakeFrame = Callable[..., pd.DataFrame]


def make_frame(
    n: int, seed: int, shift: str = "none", numeric: int = 6, categorical: int = 2
) -> pd.DataFrame:
    """Correlated numeric features (2-factor model) + categoricals, optionally shifted.

    Shifts keep every other feature untouched; "correlation" flips the sign of every other
    loading, which changes correlations but leaves every marginal distribution identical.
    """
    rng = np.random.default_rng(seed)
    loadings = LOADINGS[:, :numeric].copy()
    if shift == "correlation":
        loadings[:, 1::2] *= -1.0
    x = rng.normal(size=(n, 2)) @ loadings + rng.normal(size=(n, numeric))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(numeric)])
    if shift == "mean":
        frame["x0"] += 0.3
    elif shift == "scale":
        frame["x1"] *= 1.3
    elif shift == "tail":
        tail = rng.random(n) < 0.03
        frame.loc[tail, "x2"] = rng.standard_t(1.5, size=int(tail.sum())) * 4.0
    p = CATEGORY_P
    if shift == "categorical":
        p = np.array([0.24, 0.25, 0.20, 0.15, 0.07, 0.09])
    for j in range(categorical):
        frame[f"c{j}"] = rng.choice(CATEGORIES, size=n, p=p if j == 0 else CATEGORY_P)
    return frame


@pytest.fixture
def frame() -> MakeFrame:
    return make_frame
