"""Feedback by business key on SQLite and PostgreSQL: a key finds the one logged prediction
carrying its digest and the request-id rules apply from there; a key no prediction carries
yet is reported and not stored; a key several predictions carry is a conflict; each refusal
stores nothing of its call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select

from shipyard.core.errors import Conflict, InvalidArgument
from shipyard.monitoring.feedback import (
    Feedback,
    FeedbackOutcome,
    FeedbackStore,
    Item,
    KeyedFeedback,
    key_digest,
)
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow

SECRET = bytes(range(32))


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    with Database(database_url) as db:
        yield db


def log_prediction(database: Database, request_id: str, key: str | None) -> None:
    row = {"request_id": request_id, "deployment": "d", "revision": 1, "model": "m",
           "version": 1, "at": utcnow(), "output": 1,
           "key": key_digest(SECRET, key) if key is not None else None}  # fmt: skip
    with database.write() as session:
        session.execute(insert(PredictionRow), [row])


def stored(database: Database) -> dict[str, Any]:
    with database.read() as session:
        return dict(session.execute(select(FeedbackRow.request_id, FeedbackRow.value)).all())


def test_a_key_labels_the_prediction_that_carries_it(database: Database) -> None:
    log_prediction(database, "r-1", "order-7")
    log_prediction(database, "r-2", "1234")
    log_prediction(database, "r-3", None)
    store = FeedbackStore(database, SECRET)
    # 1234.0 is the id 1234 read from a float column.
    items: list[Item] = [
        KeyedFeedback("order-7", 1),
        KeyedFeedback("1234.0", 0),
        Feedback("r-3", 1),
    ]
    assert store.add(items, "ann") == FeedbackOutcome(stored=3, unchanged=0, unmatched=[])
    assert stored(database) == {"r-1": 1, "r-2": 0, "r-3": 1}

    # A retry by key is unchanged; a different value by key is the request id's conflict.
    again = store.add([KeyedFeedback("order-7", 1)], "ann")
    assert (again.stored, again.unchanged) == (0, 1)
    with pytest.raises(Conflict, match="request id 'r-1' was already given with a different"):
        store.add([KeyedFeedback("1234", 0), KeyedFeedback("order-7", 0)], "ann")
    assert stored(database) == {"r-1": 1, "r-2": 0, "r-3": 1}


def test_keys_without_a_prediction_are_reported_and_can_be_sent_again(
    database: Database,
) -> None:
    log_prediction(database, "r-1", "a")
    store = FeedbackStore(database, SECRET)
    outcome = store.add([KeyedFeedback("a", "spam"), KeyedFeedback("late", "ham")], "ann")
    assert outcome == FeedbackOutcome(1, 0, [], unmatched_keys=["late"])
    assert stored(database) == {"r-1": "spam"}

    log_prediction(database, "r-2", "late")  # its prediction is flushed meanwhile
    outcome = store.add([KeyedFeedback("a", "spam"), KeyedFeedback("late", "ham")], "ann")
    assert outcome == FeedbackOutcome(1, 1, [], unmatched_keys=[])
    assert stored(database) == {"r-1": "spam", "r-2": "ham"}


@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        # Two predictions carry the key (a retried request): the label is not guessed.
        ([KeyedFeedback("twice", 1)], Conflict, "key 'twice' names several logged predictions"),
        (
            [KeyedFeedback("a", 1), KeyedFeedback("a", 1)],
            Conflict,
            "key 'a' appears more than once in this batch",
        ),
        (  # the same prediction by key and by id in one call
            [KeyedFeedback("a", 1), Feedback("r-a", 1)],
            Conflict,
            "request id 'r-a' appears more than once in this batch",
        ),
        (  # "7" and "7.0" name the same key
            [KeyedFeedback("7", 1), KeyedFeedback("7.0", 1)],
            Conflict,
            "request id 'r-7' appears more than once",
        ),
        ([KeyedFeedback("bad\nkey", 1)], InvalidArgument, "without control characters"),
        ([KeyedFeedback("k" * 201, 1)], InvalidArgument, "must be 1-200 characters"),
        ([KeyedFeedback("a", float("nan"))], InvalidArgument, "of key 'a' is not a finite"),
    ],
)
def test_refused_calls_store_nothing(
    database: Database, items: list[Any], error: type[Exception], message: str
) -> None:
    for request_id, key in [("r-a", "a"), ("r-7", "7"), ("t-1", "twice"), ("t-2", "twice")]:
        log_prediction(database, request_id, key)
    store = FeedbackStore(database, SECRET)
    with pytest.raises(error, match=message):
        store.add([Feedback("r-other", 1), *items], "ann")  # a good item beside the bad one
    assert stored(database) == {}


def test_feedback_by_key_needs_the_hashing_key(database: Database) -> None:
    log_prediction(database, "r-1", "a")
    with pytest.raises(InvalidArgument, match="needs the data planes' event hashing key"):
        FeedbackStore(database).add([Feedback("r-2", 1), KeyedFeedback("a", 1)], "ann")
    assert stored(database) == {}


def test_another_hashing_key_finds_nothing(database: Database) -> None:
    log_prediction(database, "r-1", "a")
    outcome = FeedbackStore(database, bytes(32)).add([KeyedFeedback("a", 1)], "ann")
    assert outcome.unmatched_keys == ["a"] and stored(database) == {}
