"""Ground truth for logged predictions (feedback), stored once per request id.

Joined later by the rollout analysis (feedback gate), the A/B report and performance
monitoring. One store serves every way feedback arrives: `POST /feedback` and
`shipyard feedback FILE`.

Rules, so a metric cannot be moved after the fact and a retry is always safe:
- a request id gets one value; the same value again is a no-op ("unchanged"), a different
  one is a Conflict naming the id, never an overwrite;
- a call is all-or-nothing: when any item conflicts or is invalid, nothing of it is stored;
- ids with no logged prediction are stored anyway (the prediction may not be flushed yet)
  and reported back as unmatched.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, InvalidArgument
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow

Value = bool | int | float | str

# The X-Request-ID of the prediction: printable ASCII without spaces, as the data plane logs it.
REQUEST_ID = re.compile(r"[!-~]{1,128}")
MAX_VALUE_CHARS = 200
# Bounds one transaction and the size of its `IN (...)` lists on every backend.
MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Feedback:
    request_id: str
    value: Value


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    stored: int  # newly stored
    unchanged: int  # given before with the same value
    unmatched: list[str]  # ids of this call with no logged prediction (yet)


def problem(item: Feedback) -> str | None:
    """Why `item` cannot be stored, or None when it can."""
    if not isinstance(item.request_id, str) or not REQUEST_ID.fullmatch(item.request_id):
        return (
            f"request id {item.request_id!r} must be 1-128 printable ASCII characters "
            "without spaces"
        )
    value = item.value
    if isinstance(value, float) and not math.isfinite(value):
        return f"value {value!r} of request id {item.request_id!r} is not a finite number"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return (
            f"value of request id {item.request_id!r} is longer than {MAX_VALUE_CHARS} characters"
        )
    if not isinstance(value, bool | int | float | str):
        return (
            f"value of request id {item.request_id!r} must be a bool, number or string, "
            f"not {type(value).__name__}"
        )
    return None


def shown(ids: Sequence[str]) -> str:
    """At most three ids, quoted, and how many more: messages stay one readable line."""
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return ", ".join(repr(i) for i in ids[:3]) + more


def _kind(value: Any) -> str:
    # bool is an int in Python but not in JSON: true and 1 are different labels.
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def same_value(given: Any, new: Value) -> bool:
    """Whether a stored value and a new one are the same label (1 and 1.0 are; true and 1
    are not)."""
    return _kind(given) == _kind(new) and bool(given == new)


class FeedbackStore:
    """Feedback in the registry database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, items: Sequence[Feedback], actor: str) -> FeedbackOutcome:
        """Store `items` in one transaction, or nothing (InvalidArgument, Conflict)."""
        self._check(items)
        if not items:
            return FeedbackOutcome(stored=0, unchanged=0, unmatched=[])
        try:
            return self._add(items, actor)
        except IntegrityError:
            pass
        # A concurrent call stored one of these ids between our read and our insert: once
        # more, so an identical retry racing the original still ends as "unchanged".
        try:
            return self._add(items, actor)
        except IntegrityError:
            raise Conflict("feedback for one of these request ids was given meanwhile") from None

    @staticmethod
    def _check(items: Sequence[Feedback]) -> None:
        if len(items) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} feedback items per call, got {len(items)}")
        for item in items:
            reason = problem(item)
            if reason is not None:
                raise InvalidArgument(reason)
        counts = Counter(item.request_id for item in items)
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            raise Conflict(
                f"request id {shown(repeated)} appears more than once in this batch",
                details={"request_ids": repeated},
            )

    def _add(self, items: Sequence[Feedback], actor: str) -> FeedbackOutcome:
        ids = [item.request_id for item in items]
        with self.database.write() as session:
            given = self._given(session, ids)
            differing = sorted(
                i.request_id
                for i in items
                if i.request_id in given and not same_value(given[i.request_id], i.value)
            )
            if differing:
                raise Conflict(
                    f"feedback for request id {shown(differing)} was already given "
                    "with a different value",
                    details={"request_ids": differing},
                )
            new = [item for item in items if item.request_id not in given]
            now = utcnow()
            session.add_all(
                FeedbackRow(request_id=i.request_id, value=i.value, at=now, actor=actor)
                for i in new
            )
            session.flush()
            logged = set(
                session.scalars(
                    select(PredictionRow.request_id).where(PredictionRow.request_id.in_(ids))
                )
            )
        return FeedbackOutcome(
            stored=len(new),
            unchanged=len(items) - len(new),
            unmatched=[i for i in ids if i not in logged],
        )

    def values(self, ids: Sequence[str]) -> dict[str, Value]:
        """The feedback given for `ids` (those without any are left out), read in batches."""
        found: dict[str, Value] = {}
        unique = list(dict.fromkeys(ids))
        with self.database.read() as session:
            for start in range(0, len(unique), MAX_BATCH):
                found.update(self._given(session, unique[start : start + MAX_BATCH]))
        return found

    @staticmethod
    def _given(session: Session, ids: list[str]) -> dict[str, Any]:
        rows = session.execute(
            select(FeedbackRow.request_id, FeedbackRow.value).where(FeedbackRow.request_id.in_(ids))
        )
        return {request_id: value for request_id, value in rows}
