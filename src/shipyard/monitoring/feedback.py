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

Feedback may name a business key (an order id) instead of the request id, when the data plane
records one (SHIPYARD_SERVE_FEEDBACK_KEY). A key is resolved, in the same transaction, to the
one logged prediction that carries its keyed digest; then the rules above apply to that
request id. A key no logged prediction carries yet cannot be stored (nothing to attach it to):
it is reported back as unmatched and can be sent again. A key carried by several predictions
is a Conflict naming it: the label is not guessed onto one of them, nor counted twice.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, InvalidArgument
from shipyard.monitoring.eventlog.privacy import canonical_key, digest
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow

Value = bool | int | float | str

# The X-Request-ID of the prediction: printable ASCII without spaces, as the data plane logs it.
REQUEST_ID = re.compile(r"[!-~]{1,128}")
# A business key: any text without control characters.
KEY = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
MAX_VALUE_CHARS = 200
# Bounds one transaction and the size of its `IN (...)` lists on every backend.
MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Feedback:
    request_id: str
    value: Value


@dataclass(frozen=True, slots=True)
class KeyedFeedback:
    """Ground truth naming the prediction by its business key."""

    key: str
    value: Value


Item = Feedback | KeyedFeedback


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    stored: int  # newly stored
    unchanged: int  # given before with the same value
    unmatched: list[str]  # ids of this call with no logged prediction (yet)
    unmatched_keys: list[str] = field(default_factory=list)  # keys not stored: send again


def key_digest(hash_key: bytes, key: str) -> str:
    """What the data plane stores for a business key: a keyed digest of its canonical text."""
    return digest(hash_key, canonical_key(key))


def _name(item: Item) -> str:
    if isinstance(item, KeyedFeedback):
        return f"key {item.key!r}"
    return f"request id {item.request_id!r}"


def problem(item: Item) -> str | None:
    """Why `item` cannot be stored, or None when it can."""
    if isinstance(item, KeyedFeedback):
        if not isinstance(item.key, str) or not KEY.fullmatch(item.key):
            return f"key {item.key!r} must be 1-200 characters without control characters"
    elif not isinstance(item.request_id, str) or not REQUEST_ID.fullmatch(item.request_id):
        return (
            f"request id {item.request_id!r} must be 1-128 printable ASCII characters "
            "without spaces"
        )
    value, name = item.value, _name(item)
    if isinstance(value, float) and not math.isfinite(value):
        return f"value {value!r} of {name} is not a finite number"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"value of {name} is longer than {MAX_VALUE_CHARS} characters"
    if not isinstance(value, bool | int | float | str):
        return f"value of {name} must be a bool, number or string, not {type(value).__name__}"
    return None


def shown(ids: Sequence[str]) -> str:
    """At most three ids, quoted, and how many more: messages stay one readable line."""
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return ", ".join(repr(i) for i in ids[:3]) + more


def _no_repeats(names: Sequence[str], what: str, detail: str) -> None:
    counts = Counter(names)
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise Conflict(
            f"{what} {shown(repeated)} appears more than once in this batch",
            details={detail: repeated},
        )


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
    """Feedback in the registry database. `hash_key` is the event hashing key of the data
    planes (HOME/events/.hash-key): without it feedback by business key is refused."""

    def __init__(self, database: Database, hash_key: bytes | None = None) -> None:
        self.database = database
        self.hash_key = hash_key

    def add(self, items: Sequence[Item], actor: str) -> FeedbackOutcome:
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

    def _check(self, items: Sequence[Item]) -> None:
        if len(items) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} feedback items per call, got {len(items)}")
        for item in items:
            reason = problem(item)
            if reason is not None:
                raise InvalidArgument(reason)
        keys = [item.key for item in items if isinstance(item, KeyedFeedback)]
        if keys and self.hash_key is None:
            raise InvalidArgument(
                "feedback by key needs the data planes' event hashing key (HOME/events/.hash-key)"
            )
        ids = [item.request_id for item in items if isinstance(item, Feedback)]
        _no_repeats(ids, "request id", "request_ids")
        _no_repeats(keys, "key", "keys")

    def _add(self, items: Sequence[Item], actor: str) -> FeedbackOutcome:
        with self.database.write() as session:
            direct, unmatched_keys = self._resolve(session, items)
            ids = [item.request_id for item in direct]
            given = self._given(session, ids)
            differing = sorted(
                i.request_id
                for i in direct
                if i.request_id in given and not same_value(given[i.request_id], i.value)
            )
            if differing:
                raise Conflict(
                    f"feedback for request id {shown(differing)} was already given "
                    "with a different value",
                    details={"request_ids": differing},
                )
            new = [item for item in direct if item.request_id not in given]
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
            unchanged=len(direct) - len(new),
            unmatched=[i for i in ids if i not in logged],
            unmatched_keys=unmatched_keys,
        )

    def _resolve(self, session: Session, items: Sequence[Item]) -> tuple[list[Feedback], list[str]]:
        """Every item as feedback by request id (keys resolved through the predictions
        table), and the keys no prediction carries yet."""
        direct = [item for item in items if isinstance(item, Feedback)]
        keyed = [item for item in items if isinstance(item, KeyedFeedback)]
        if not keyed or self.hash_key is None:
            return direct, []
        digests = {item.key: key_digest(self.hash_key, item.key) for item in keyed}
        carriers: defaultdict[str, list[str]] = defaultdict(list)
        rows = session.execute(
            select(PredictionRow.key, PredictionRow.request_id).where(
                PredictionRow.key.in_(set(digests.values()))
            )
        )
        for digest_, request_id in rows:
            carriers[str(digest_)].append(request_id)
        several = [item.key for item in keyed if len(carriers[digests[item.key]]) > 1]
        if several:
            raise Conflict(
                f"key {shown(several)} names several logged predictions; give their request "
                "ids instead",
                details={"keys": several},
            )
        resolved = [
            Feedback(carriers[digests[item.key]][0], item.value)
            for item in keyed
            if carriers[digests[item.key]]
        ]
        # "12" and "12.0", or a key and the request id it names, must not label one twice.
        _no_repeats([i.request_id for i in [*direct, *resolved]], "request id", "request_ids")
        unmatched = [item.key for item in keyed if not carriers[digests[item.key]]]
        return [*direct, *resolved], unmatched

    def values(self, ids: Sequence[str]) -> dict[str, Value]:
        """The feedback given for `ids` (those without any are left out), read in batches."""
        found: dict[str, Value] = {}
        unique = list(dict.fromkeys(ids))
        with self.database.read() as session:
            for start in range(0, len(unique), MAX_BATCH):
                found.update(self._given(session, unique[start : start + MAX_BATCH]))
        return found

    def _given(self, session: Session, ids: list[str]) -> dict[str, Any]:
        request_id = FeedbackRow.request_id
        # PostgreSQL takes the ids as one array parameter: 3.3x faster than a bound parameter
        # per id (bench/feedback_reads.py).
        condition = (
            request_id == any_(bindparam("ids", ids, type_=ARRAY(String)))
            if self.database.is_postgres
            else request_id.in_(ids)
        )
        rows = session.execute(select(request_id, FeedbackRow.value).where(condition))
        return {found: value for found, value in rows}
