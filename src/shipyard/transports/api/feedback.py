"""POST /feedback: ground truth for logged predictions, joined later by the rollout analysis
(feedback gate) and the A/B report.

The rules live in `monitoring.feedback.FeedbackStore` (shared with `shipyard feedback FILE`):
each request id gets one value; the same value again is counted as unchanged (a retry is
safe), a different one is a conflict (409 naming it), never an overwrite; a call is stored
whole or not at all. Ids with no logged prediction are stored anyway and reported back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from shipyard.monitoring.feedback import MAX_VALUE_CHARS, Feedback, FeedbackStore
from shipyard.transports.api.context import Caller
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.schemas import FeedbackResult
from shipyard.transports.api.security import PREDICT

router = APIRouter(responses=ERROR_RESPONSES, tags=["feedback"])

MAX_ITEMS = 1000
Finite = Annotated[float, Field(allow_inf_nan=False)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The X-Request-ID of the prediction: printable ASCII without spaces.
    request_id: str = Field(pattern=r"^[!-~]{1,128}$")
    value: bool | int | Finite | Annotated[str, Field(max_length=MAX_VALUE_CHARS)]


@router.post("/feedback", response_model=FeedbackResult)
def post_feedback(
    items: Annotated[list[FeedbackItem], Body(min_length=1, max_length=MAX_ITEMS)],
    caller: Caller = PREDICT,
) -> FeedbackResult:
    """Store ground truth `[{request_id, value}]` (at most 1000 per call)."""
    store = FeedbackStore(caller.registry.database)
    outcome = store.add([Feedback(i.request_id, i.value) for i in items], caller.key.principal)
    return FeedbackResult(
        accepted=outcome.stored, unmatched=outcome.unmatched, unchanged=outcome.unchanged
    )
