"""What data planes count per variant and analysis reads: mergeable window statistics.

Latency is kept as counts in fixed log-spaced buckets, so the counts of many data planes and
many flushes add up exactly (a rollout's window spans both). Each edge is ~9.4 % above the one
before, which bounds how much slower a candidate can be and still count as "not slower" in the
latency gate. Rows written with the earlier scheme (41 buckets, ~43 % apart; every fourth edge
of this one) are read through `latency_counts`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

# Upper bucket edges in seconds: 157 log-spaced edges from 50 µs to 60 s, then +inf.
_LOW_S, _HIGH_S, _REFINE = 50e-6, 60.0, 4
_EDGES = 39 * _REFINE + 1
LATENCY_EDGES_S: tuple[float, ...] = tuple(
    _LOW_S * (_HIGH_S / _LOW_S) ** (i / (_EDGES - 1)) for i in range(_EDGES)
) + (math.inf,)
BUCKETS = len(LATENCY_EDGES_S)
LEGACY_BUCKETS = 41  # the earlier scheme: its edge i is edge REFINE * i here
MAX_PREDICTIONS = 512  # sample of prediction values a variant keeps per flush


def bucket_of(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_EDGES_S, seconds)


def empty_latency() -> list[int]:
    return [0] * BUCKETS


def latency_counts(stored: list[int]) -> list[int]:
    """Counts as stored in a row, in this scheme's buckets. A legacy row's count moves to the
    bucket with the same upper edge: its requests count as slow as they may have been."""
    if len(stored) != LEGACY_BUCKETS:
        return list(stored)
    counts = empty_latency()
    for index, count in enumerate(stored[:-1]):
        counts[index * _REFINE] += count
    counts[-1] += stored[-1]  # beyond 60 s in both schemes
    return counts


@dataclass(slots=True)
class VariantWindow:
    """One variant's traffic over an analysis window (or one flush of one data plane)."""

    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=empty_latency)
    predictions: list[float] = field(default_factory=list)
    shadow_total: int = 0
    shadow_agree: int = 0
    feedback_total: int = 0  # labelled predictions in the window
    feedback_correct: int = 0

    def add(self, other: VariantWindow) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for index, count in enumerate(other.latency[:BUCKETS]):
            self.latency[index] += count
        self.predictions.extend(other.predictions)
        self.shadow_total += other.shadow_total
        self.shadow_agree += other.shadow_agree
        self.feedback_total += other.feedback_total
        self.feedback_correct += other.feedback_correct

    def latency_quantile(self, q: float) -> float:
        """The upper edge of the bucket holding quantile `q` (seconds; inf when empty)."""
        total = sum(self.latency)
        if total == 0:
            return math.inf
        rank, seen = q * total, 0
        for index, count in enumerate(self.latency):
            seen += count
            if seen >= rank:
                return LATENCY_EDGES_S[index]
        return math.inf

    def slower_than(self, seconds: float) -> int:
        """Requests in buckets wholly above `seconds`."""
        first = bisect.bisect_right(LATENCY_EDGES_S, seconds)
        return sum(self.latency[first:])
