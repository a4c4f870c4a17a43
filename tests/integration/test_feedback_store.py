"""FeedbackStore on SQLite and PostgreSQL: one value per request id, identical repeats are
no-ops, a different value is a conflict naming the id, a call is stored whole or not at all,
and late feedback (no logged prediction yet) is stored and reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, InvalidArgument
from shipyard.monitoring.feedback import (
    MAX_BATCH,
    Feedback,
    FeedbackOutcome,
    FeedbackStore,
    same_value,
)
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    with Database(database_url) as db:
        yield db


def stored(database: Database) -> dict[str, tuple[Any, str]]:
    with database.read() as session:
        rows = session.execute(select(FeedbackRow.request_id, FeedbackRow.value, FeedbackRow.actor))
        return {request_id: (value, actor) for request_id, value, actor in rows}


def log_prediction(database: Database, request_id: str) -> None:
    row = {"request_id": request_id, "deployment": "d", "revision": 1, "model": "m",
           "version": 1, "at": utcnow(), "output": 1}  # fmt: skip
    with database.write() as session:
        session.execute(insert(PredictionRow), [row])


def test_stores_each_value_and_reports_ids_without_a_logged_prediction(
    database: Database,
) -> None:
    log_prediction(database, "r-1")
    items = [Feedback("r-1", 1), Feedback("r-2", "fraud"), Feedback("r-3", 0.25),
             Feedback("r-4", True)]  # fmt: skip
    outcome = FeedbackStore(database).add(items, "ann")
    assert outcome == FeedbackOutcome(stored=4, unchanged=0, unmatched=["r-2", "r-3", "r-4"])
    assert stored(database) == {
        "r-1": (1, "ann"), "r-2": ("fraud", "ann"), "r-3": (0.25, "ann"), "r-4": (True, "ann"),
    }  # fmt: skip
    assert type(stored(database)["r-4"][0]) is bool  # true stays a bool, not the number 1


def test_same_value_again_is_unchanged_and_keeps_the_first_record(database: Database) -> None:
    store = FeedbackStore(database)
    store.add([Feedback("a", 1), Feedback("b", "x"), Feedback("c", 0.5)], "ann")
    again = store.add([Feedback("a", 1.0), Feedback("b", "x"), Feedback("d", 0)], "bob")
    assert again == FeedbackOutcome(stored=1, unchanged=2, unmatched=["a", "b", "d"])
    assert stored(database) == {
        "a": (1, "ann"), "b": ("x", "ann"), "c": (0.5, "ann"), "d": (0, "bob"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second"),
    [(1, 2), (1, True), (True, 1), (1, "1"), ("fraud", "Fraud"), (0.5, 0.25), (False, 0)],
)
def test_a_different_value_is_a_conflict_and_nothing_of_the_call_is_stored(
    database: Database, first: Any, second: Any
) -> None:
    store = FeedbackStore(database)
    store.add([Feedback("given", first)], "ann")
    with pytest.raises(Conflict) as caught:
        store.add([Feedback("new-1", 1), Feedback("given", second), Feedback("new-2", 0)], "bob")
    assert caught.value.message == (
        "feedback for request id 'given' was already given with a different value"
    )
    assert caught.value.details == {"request_ids": ["given"]}
    assert stored(database) == {"given": (first, "ann")}


def test_conflict_message_names_at_most_three_ids(database: Database) -> None:
    store = FeedbackStore(database)
    store.add([Feedback(f"id-{i}", 0) for i in range(5)], "ann")
    with pytest.raises(Conflict, match=r"'id-0', 'id-1', 'id-2' and 2 more was already given"):
        store.add([Feedback(f"id-{i}", 1) for i in range(5)], "ann")
    assert {value for value, _ in stored(database).values()} == {0}


def test_a_repeated_id_in_one_call_is_a_conflict_even_with_the_same_value(
    database: Database,
) -> None:
    with pytest.raises(Conflict, match="request id 'r' appears more than once in this batch"):
        FeedbackStore(database).add([Feedback("ok", 1), Feedback("r", 1), Feedback("r", 1)], "a")
    assert stored(database) == {}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (Feedback("", 1), "request id '' must be 1-128 printable ASCII"),
        (Feedback("a b", 1), "request id 'a b' must be 1-128"),
        (Feedback("x" * 129, 1), "must be 1-128 printable ASCII"),
        (Feedback("é", 1), "request id 'é' must be"),
        (Feedback("r", float("nan")), "value nan of request id 'r' is not a finite number"),
        (Feedback("r", float("-inf")), "value -inf of request id 'r' is not a finite number"),
        (Feedback("r", "x" * 201), "value of request id 'r' is longer than 200 characters"),
        (Feedback("r", {"deep": 1}), "must be a bool, number or string, not dict"),  # type: ignore[arg-type]
        (Feedback("r", None), "must be a bool, number or string, not NoneType"),  # type: ignore[arg-type]
    ],
)
def test_an_invalid_item_stores_nothing(database: Database, item: Feedback, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        FeedbackStore(database).add([Feedback("fine", 1), item], "ann")
    assert stored(database) == {}


def test_batch_bounds(database: Database) -> None:
    store = FeedbackStore(database)
    assert store.add([], "ann") == FeedbackOutcome(stored=0, unchanged=0, unmatched=[])
    too_many = [Feedback(f"n{i}", 1) for i in range(MAX_BATCH + 1)]
    with pytest.raises(InvalidArgument, match=f"at most {MAX_BATCH} feedback items per call"):
        store.add(too_many, "ann")
    assert stored(database) == {}
    outcome = store.add(too_many[:MAX_BATCH], "ann")  # the largest call fits every backend
    assert (outcome.stored, len(stored(database))) == (MAX_BATCH, MAX_BATCH)


def test_a_concurrent_identical_write_ends_as_unchanged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer stores the same ids between our read and our insert: the unique key
    refuses the insert, and the retry sees the rows and counts them as unchanged."""
    store = FeedbackStore(database)
    store.add([Feedback("race", 1)], "other")
    real = FeedbackStore._given
    calls: list[list[str]] = []

    def stale_once(self: FeedbackStore, session: Session, ids: list[str]) -> dict[str, Any]:
        calls.append(ids)
        return {} if len(calls) == 1 else real(self, session, ids)

    monkeypatch.setattr(FeedbackStore, "_given", stale_once)
    outcome = store.add([Feedback("fresh", 0), Feedback("race", 1)], "ann")
    assert outcome == FeedbackOutcome(stored=1, unchanged=1, unmatched=["fresh", "race"])
    assert len(calls) == 2
    assert stored(database) == {"race": (1, "other"), "fresh": (0, "ann")}


def test_a_write_that_keeps_racing_is_a_conflict(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeedbackStore(database)
    store.add([Feedback("race", 1)], "other")
    monkeypatch.setattr(FeedbackStore, "_given", lambda self, session, ids: {})
    with pytest.raises(Conflict, match="was given meanwhile"):
        store.add([Feedback("fresh", 0), Feedback("race", 1)], "ann")
    assert stored(database) == {"race": (1, "other")}


def test_the_unique_key_is_what_catches_the_race(database: Database) -> None:
    """The retry above relies on the backend refusing a second row for one id."""
    row = {"request_id": "k", "value": 1, "at": utcnow(), "actor": "a"}
    with database.write() as session:
        session.execute(insert(FeedbackRow), [row])
    with pytest.raises(IntegrityError), database.write() as session:
        session.execute(insert(FeedbackRow), [row])


@pytest.mark.parametrize(
    ("given", "new", "same"),
    [
        (1, 1, True),
        (1, 1.0, True),
        (0.1, 0.1, True),
        ("a", "a", True),
        (True, True, True),
        (True, 1, False),
        (0, False, False),
        ("1", 1, False),
        (1, 2, False),
    ],  # fmt: skip
)
def test_same_value(given: Any, new: Any, same: bool) -> None:
    assert same_value(given, new) is same
