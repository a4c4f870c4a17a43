"""GET /deployments/{name}/ab: per-variant requests, errors, latency and feedback of the
current revision with confidence intervals (rollouts/abreport.py)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from shipyard.core.errors import Unavailable
from shipyard.transports.api.context import Caller
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.security import READ

router = APIRouter(responses=ERROR_RESPONSES, tags=["deployments"])


class AbComparison(BaseModel):
    difference: float | None
    ci: list[float | None]
    p_value: float | None


class AbVariant(BaseModel):
    ref: str
    role: str
    weight: int
    requests: int
    errors: int
    error_rate: float | None
    error_rate_ci: list[float | None] | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    feedback: int
    accuracy: float | None
    accuracy_ci: list[float | None] | None
    error_rate_vs_primary: AbComparison | None
    accuracy_vs_primary: AbComparison | None


class AbReportOut(BaseModel):
    deployment: str
    revision: int
    strategy: str
    since: datetime | None
    generated_at: datetime
    confidence: float
    variants: list[AbVariant]  # the primary first


def _finite(value: Any) -> Any:
    """NaN and infinities (a degenerate test) are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@router.get("/deployments/{name}/ab", response_model=AbReportOut)
def ab_results(name: str, since: datetime | None = None, caller: Caller = READ) -> AbReportOut:
    """A/B results of the current revision (from `since`, timezone required, when given)."""
    try:  # the statistics need scipy, which a minimal installation may not have
        from shipyard.rollouts.abreport import ab_report
    except ImportError as exc:
        raise Unavailable(f"the A/B report is not available here: {exc}") from None
    report = ab_report(caller.deployments, name, since=since)
    return AbReportOut.model_validate(_finite(report.to_json()))
