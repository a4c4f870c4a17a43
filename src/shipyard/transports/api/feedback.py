"""POST /feedback: ground truth for logged predictions, joined later by the rollout analysis
(feedback gate) and the A/B report.

The rules live in `monitoring.feedback.FeedbackStore` (shared with `shipyard feedback FILE`):
each request id gets one value; the same value again is counted as unchanged (a retry is
safe), a different one is a conflict (409 naming it), never an overwrite; a call is stored
whole or not at all. Ids with no logged prediction are stored anyway and reported back.
An item may name the prediction by its business key instead (`key`, when the data planes
record one): keys no logged prediction carries yet are not stored and are reported back in
`unmatched_keys`, to send again; a key carried by several predictions is a 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from shipyard.monitoring.eventlog.privacy import load_or_create_key
from shipyard.monitoring.feedback import (
    MAX_VALUE_CHARS,
    Feedback,
    FeedbackStore,
    Item,
    KeyedFeedback,
)
from shipyard.transports.api.context import Caller, services
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.schemas import FeedbackResult
from shipyard.transports.api.security import PREDICT

router = APIRouter(responses=ERROR_RESPONSES, tags=["feedback"])

MAX_ITEMS = 1000
Finite = Annotated[float, Field(allow_inf_nan=False)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The X-Request-ID of the prediction: printable ASCII without spaces.
    request_id: str | None = Field(default=None, pattern=r"^[!-~]{1,128}$")
    # Or its business key (the data plane's --feedback-key input), as text or an integer.
    key: Annotated[str, Field(min_length=1, max_length=200)] | StrictInt | None = None
    value: bool | int | Finite | Annotated[str, Field(max_length=MAX_VALUE_CHARS)]

    @model_validator(mode="after")
    def _one_name(self) -> FeedbackItem:
        if (self.request_id is None) == (self.key is None):
            raise ValueError("give either request_id or key")
        return self

    def item(self) -> Item:
        if self.request_id is not None:
            return Feedback(self.request_id, self.value)
        return KeyedFeedback(str(self.key), self.value)


@router.post("/feedback", response_model=FeedbackResult)
def post_feedback(
    request: Request,
    items: Annotated[list[FeedbackItem], Body(min_length=1, max_length=MAX_ITEMS)],
    caller: Caller = PREDICT,
) -> FeedbackResult:
    """Store ground truth `[{request_id | key, value}]` (at most 1000 per call)."""
    home = services(request).options.home
    keyed = any(i.key is not None for i in items)
    hash_key = load_or_create_key(home) if keyed and home is not None else None
    store = FeedbackStore(caller.registry.database, hash_key)
    outcome = store.add([i.item() for i in items], caller.key.principal)
    return FeedbackResult(
        accepted=outcome.stored,
        unmatched=outcome.unmatched,
        unchanged=outcome.unchanged,
        unmatched_keys=outcome.unmatched_keys,
    )
