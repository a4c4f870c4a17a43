"""A rollout Policy: the traffic steps, the analysis window and the gates each window must pass.

Written by users as YAML or JSON (`shipyard deploy --policy FILE`), so every field is checked
and a mistake names the field. Example:

    steps: [10, 25, 50, 100]      # candidate share in percent; the last step must be 100
    window_s: 60                  # an analysis window lasts at least this long...
    min_requests: 200             # ...and until each variant has served this many requests
    warmup_s: 0                   # the rollout's first seconds, left out of its first window
    max_windows: 3                # inconclusive windows a step may hold before rolling back
    gates:
      error_rate: {max_increase: 0.01, alpha: 0.05}
      latency: {quantile: 0.95, max_ratio: 1.25, alpha: 0.05, tolerance_ms: 1}
      predictions: {alpha: 0.001}
      shadow_agreement: {min_rate: 0.95}
      feedback: {max_drop: 0.05, alpha: 0.05, min_samples: 50}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.codecs.documents import read_yaml, validate_document

MAX_POLICY_BYTES = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorRateGate(_Strict):
    """Fail when the candidate's error rate exceeds the baseline's by more than
    `max_increase`, by a one-sided two-proportion test at level `alpha`."""

    max_increase: float = Field(default=0.01, ge=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)


class LatencyGate(_Strict):
    """Fail when the candidate's share of requests slower than the baseline's `quantile`
    latency (plus `tolerance_ms`) exceeds the baseline's own share by more than
    (max_ratio - 1) x (1 - quantile) (with the defaults: 6.25 % against 5 %), by a one-sided
    two-proportion test at `alpha`. The tolerance is the smallest slowdown that matters: a
    sub-millisecond model's tail moves by fractions of a millisecond with the scheduling of a
    busy machine, which a test on thousands of requests would call significant."""

    quantile: float = Field(default=0.95, gt=0.5, lt=1)
    max_ratio: float = Field(default=1.25, ge=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    tolerance_ms: float = Field(default=1.0, ge=0, le=60_000)


class PredictionGate(_Strict):
    """Fail when the candidate's predictions are distributed unlike the primary's."""

    alpha: float = Field(default=0.001, gt=0, lt=0.5)


class ShadowGate(_Strict):
    """Fail when the shadow agrees with the primary on fewer than `min_rate` of requests."""

    min_rate: float = Field(default=0.95, ge=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)


class FeedbackGate(_Strict):
    """Fail when the candidate's accuracy on ground-truth feedback is lower than the
    baseline's by more than `max_drop` (one-sided two-proportion test); skipped until both
    have `min_samples` labelled predictions."""

    max_drop: float = Field(default=0.05, ge=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_samples: int = Field(default=50, ge=10)


class Gates(_Strict):
    error_rate: ErrorRateGate | None = ErrorRateGate()
    latency: LatencyGate | None = LatencyGate()
    predictions: PredictionGate | None = None
    shadow_agreement: ShadowGate | None = None
    feedback: FeedbackGate | None = None


class Policy(_Strict):
    steps: tuple[int, ...] = (10, 25, 50, 100)
    window_s: float = Field(default=60.0, gt=0, le=86_400)
    # A new version's first requests on each data plane pay one-time costs (its first batches,
    # new statistics and metrics keys); with short windows they would be a real share of it.
    warmup_s: float = Field(default=0.0, ge=0, le=3600)
    min_requests: int = Field(default=200, ge=20)
    max_windows: int = Field(default=3, ge=1, le=100)
    gates: Gates = Gates()

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("give at least one step")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("each step is a percentage between 1 and 100")
        if list(steps) != sorted(set(steps)):
            raise ValueError("steps must increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_policy(data: object) -> Policy:
    """A Policy from already-parsed YAML/JSON; the error names the first bad field."""
    shape = "a rollout policy is a mapping of fields (steps, window_s, gates...)"
    return validate_document(Policy, data, field_label="policy field", shape=shape)


def load_policy(path: Path) -> Policy:
    """Read a YAML (or JSON) policy file."""
    return parse_policy(read_yaml(path, what="policy file", max_bytes=MAX_POLICY_BYTES))
