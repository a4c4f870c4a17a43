"""The A/B report's interval arithmetic against published values (pure)."""

from __future__ import annotations

import pytest

from shipyard.rollouts.abreport import compare, wilson


def test_wilson_matches_the_published_interval() -> None:
    # 20 errors in 1000 requests: Wilson 95 % interval 1.30 % to 3.07 %.
    assert wilson(20, 1000) == pytest.approx((0.012984, 0.030690), abs=1e-6)
    low, high = wilson(0, 10) or (-1.0, -1.0)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)  # not (0, 0) like Wald
    assert wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)


def test_no_data_has_no_interval() -> None:
    assert wilson(0, 0) is None
    assert compare(1, 10, 0, 0) is None and compare(0, 0, 1, 10) is None


@pytest.mark.parametrize(
    ("counts", "interval"),
    [  # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ],
)
def test_difference_interval_matches_newcombe(
    counts: tuple[int, int, int, int], interval: tuple[float, float]
) -> None:
    result = compare(*counts)
    assert result is not None
    assert result.interval == pytest.approx(interval, abs=5e-5)
    x1, n1, x0, n0 = counts
    assert result.difference == pytest.approx(x1 / n1 - x0 / n0)


def test_p_values_use_fisher_for_small_counts_and_z_otherwise() -> None:
    small = compare(3, 10, 0, 10)  # expected cells under 5: Fisher's exact test
    assert small is not None and small.p_value == pytest.approx(0.2105263, abs=1e-6)
    large = compare(30, 1000, 20, 1000)
    assert large is not None and large.p_value == pytest.approx(0.15208, abs=1e-4)
    same = compare(0, 50, 0, 80)
    assert same is not None and same.p_value == 1.0 and same.difference == 0.0
