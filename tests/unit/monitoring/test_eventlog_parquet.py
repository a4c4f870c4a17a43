"""The Parquet sink, the DuckDB reader, retention and erasure over the files."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from eventlog_support import KEY, event
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shipyard.app.serve_settings import ServeSettings
from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.eventlog import (
    ParquetSink,
    ParquetStore,
    PredictionLogger,
    digest,
    erase,
    parse_age,
    prune,
    read_events,
)
from shipyard.monitoring.eventlog.parquet import DEFAULT_ROLL_S, parts
from shipyard.monitoring.eventlog.sinks import open_sinks
from shipyard.storage.database import Database

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_events_round_trip_through_the_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write([event(i, at=NOON, age=timedelta(minutes=i)) for i in range(10)])
    sink.close()
    (part,) = parts(tmp_path)
    assert part.parent == tmp_path / "events" / "fraud" / "date=2026-03-10"
    assert part.name.startswith("part-2") and part.suffix == ".parquet"
    frame = read_events(tmp_path, model="fraud")
    assert list(frame["request_id"]) == [f"req-{i}" for i in range(10)]
    assert list(frame["input.amount"]) == [float(i) for i in range(10)]
    assert list(frame["output.label"]) == [i % 2 for i in range(10)]
    assert frame["at"].iloc[0] == NOON
    assert set(frame["deployment"]) == {"fraud-prod"}


def test_rows_of_one_request_become_rows_in_order(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    many = event(0, at=NOON, inputs={"x": [3, 1, 2]})
    sampled_out = event(1, at=NOON - timedelta(seconds=1), inputs={})
    sink.write([many, sampled_out])
    sink.close()
    frame = read_events(tmp_path)
    assert list(frame["request_id"]) == ["req-0", "req-0", "req-0", "req-1"]
    assert list(frame["row"]) == [0, 1, 2, 0]
    assert list(frame["input.x"].iloc[:3]) == [3, 1, 2]
    assert frame["input.x"].isna().iloc[3]
    assert frame["output.label"].iloc[3] == 1
    by_event = read_events(tmp_path, explode=False)
    assert len(by_event) == 2
    assert list(by_event["input.x"].iloc[0]) == [3, 1, 2]


def test_reader_filters_and_limits(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write([event(i, at=NOON, age=timedelta(hours=i)) for i in range(6)])
    sink.write([event(9, model="churn", at=NOON, deployment=None)])
    sink.close()
    window = read_events(tmp_path, model="fraud", since=NOON - timedelta(hours=3), until=NOON)
    assert list(window["request_id"]) == ["req-1", "req-2", "req-3"]
    assert list(read_events(tmp_path, model="fraud", limit=2)["request_id"]) == ["req-0", "req-1"]
    assert len(read_events(tmp_path)) == 7
    assert list(read_events(tmp_path, deployment="fraud-prod", limit=1)["model"]) == ["fraud"]
    assert read_events(tmp_path, model="nothing").empty


def test_reader_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="since must be timezone-aware"):
        read_events(tmp_path, since=datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument, match="limit must be at least 1, got 0"):
        read_events(tmp_path, limit=0)
    with pytest.raises(InvalidArgument, match="must not contain '..'"):
        read_events(tmp_path, model="../etc")


def test_parts_roll_by_size_and_by_schema(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, max_bytes=1)
    sink.write([event(0, at=NOON)])
    sink.write([event(1, at=NOON)])
    assert len(list(parts(tmp_path))) == 2
    growing = ParquetSink(tmp_path / "b")
    growing.write([event(0, at=NOON)])
    growing.write([event(1, at=NOON, inputs={"amount": [1.0]})])  # fits: a missing column
    assert list(parts(tmp_path / "b")) == []  # nothing visible before a part is complete
    growing.write([event(2, at=NOON, inputs={"new": ["x"]})])  # a new column: new part
    assert len(list(parts(tmp_path / "b"))) == 1
    growing.close()
    assert len(list(parts(tmp_path / "b"))) == 2
    frame = read_events(tmp_path / "b")
    assert len(frame) == 3
    assert frame.set_index("request_id").loc["req-2", "input.new"] == "x"


def test_parts_roll_by_age(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, max_age_s=0.0)
    sink.write([event(0, at=NOON)])
    assert len(list(parts(tmp_path))) == 1
    sink.close()


def test_the_serve_setting_sets_how_soon_a_part_rolls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_SERVE_LOG_ROLL_S", "2.5")
    settings = ServeSettings()
    database = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        [sink] = open_sinks(
            ["parquet"], home=tmp_path, database=database, roll_s=settings.log_roll_s
        )
    finally:
        database.close()
    assert isinstance(sink, ParquetSink) and sink.max_age_s == 2.5
    sink.write([event(0, at=NOON)])
    sink.tick()
    assert not list(parts(tmp_path)), "younger than 2.5 s: still open"
    sink._open[next(iter(sink._open))].opened -= 3.0  # as if opened 3 s ago
    sink.tick()
    assert len(list(parts(tmp_path))) == 1
    sink.close()


@pytest.mark.parametrize("value", ["0", "-1", "100000", "soon"])
def test_a_bad_roll_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SHIPYARD_SERVE_LOG_ROLL_S", value)
    with pytest.raises(ValidationError, match="log_roll_s"):
        ServeSettings()


def test_unsafe_model_name_refused_and_nothing_written(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    with pytest.raises(InvalidArgument, match="must not contain '..'"):
        sink.write([event(0, model="../../outside")])
    assert not (tmp_path.parent / "outside").exists()


def test_hashed_and_excluded_values_never_reach_the_files(tmp_path: Path) -> None:
    logger = PredictionLogger(
        [ParquetSink(tmp_path)],
        hash_key=KEY,
        exclude=["ssn"],
        hash_columns=["email"],
        flush_interval_s=0.01,
    )
    raw: dict[str, list[object]] = {
        "ssn": ["SSN-77-RAW"],
        "email": ["RAW-MAIL@example.org"],
        "amount": [3.0],
    }
    logger.emit(event(0, inputs=raw))
    logger.close()
    (part,) = parts(tmp_path)
    content = part.read_bytes()
    assert b"SSN-77-RAW" not in content and b"RAW-MAIL@example.org" not in content
    assert digest(KEY, "RAW-MAIL@example.org").encode() in content
    assert b"SSN" not in content.upper().replace(b"ssn", b"")  # not even the column name
    frame = read_events(tmp_path)
    assert "input.ssn" not in frame.columns


def test_prune_removes_exactly_the_old_rows(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    now = NOON
    # Two days ago, yesterday at noon and at 18:00, today: cutoff is yesterday 15:00.
    ages = [timedelta(days=2), timedelta(hours=24), timedelta(hours=18), timedelta(0)]
    sink.write([event(i, at=now, age=age) for i, age in enumerate(ages)])
    sink.close()
    assert len(list(parts(tmp_path))) == 3  # one part per day
    removal = prune([ParquetStore(tmp_path)], timedelta(hours=21), now=now)
    assert removal.removed == {"parquet": 2}
    assert sorted(read_events(tmp_path)["request_id"]) == ["req-2", "req-3"]
    assert len(list(parts(tmp_path))) == 2  # the oldest day's part deleted outright
    again = prune([ParquetStore(tmp_path)], timedelta(hours=21), now=now)
    assert again.removed == {"parquet": 0}


def test_erase_removes_exactly_one_subject(tmp_path: Path) -> None:
    logger = PredictionLogger(
        [ParquetSink(tmp_path)], hash_key=KEY, subject_column="customer", flush_interval_s=0.01
    )
    for i in range(6):
        logger.emit(event(i, inputs={"customer": ["alice" if i % 3 == 0 else f"c{i}"]}))
    logger.close()
    before = len(read_events(tmp_path))
    removal = erase([ParquetStore(tmp_path)], "alice", KEY)
    assert removal.removed == {"parquet": 2}
    left = read_events(tmp_path)
    assert len(left) == before - 2
    assert digest(KEY, "alice") not in set(left["subject"])
    assert erase([ParquetStore(tmp_path)], "nobody", KEY).removed == {"parquet": 0}
    assert len(read_events(tmp_path)) == before - 2


def test_erase_deletes_a_part_left_empty(tmp_path: Path) -> None:
    logger = PredictionLogger(
        [ParquetSink(tmp_path)], hash_key=KEY, subject_column="customer", flush_interval_s=0.01
    )
    logger.emit(event(0, inputs={"customer": ["bob"]}))
    logger.close()
    assert erase([ParquetStore(tmp_path)], "bob", KEY).total == 1
    assert list(parts(tmp_path)) == []
    assert read_events(tmp_path).empty


def test_rewritten_part_keeps_its_schema(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    sink.write([event(0, at=NOON), event(1, at=NOON, age=timedelta(hours=2))])
    sink.close()
    (part,) = parts(tmp_path)
    schema = pq.read_schema(part)
    prune([ParquetStore(tmp_path)], timedelta(hours=1), now=NOON)
    assert pq.read_schema(part) == schema
    assert list(read_events(tmp_path)["request_id"]) == ["req-0"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90min", timedelta(minutes=90))],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "-3d", "0d"])
def test_parse_age_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidArgument, match="period"):
        parse_age(text)


def test_erase_refuses_an_empty_key(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="the key to erase must not be empty"):
        erase([ParquetStore(tmp_path)], "", KEY)


@given(st.text(max_size=20))
def test_parse_age_never_fails_otherwise(text: str) -> None:
    try:
        age = parse_age(text)
    except InvalidArgument:
        return
    assert age > timedelta(0)


def test_prune_removes_unfinished_parts_left_by_a_dead_process(tmp_path: Path) -> None:
    dead = ParquetSink(tmp_path)
    dead.write([event(0, at=NOON)])  # never closed: the part stays a hidden temporary file
    (unfinished,) = tmp_path.rglob(".part-*.tmp")
    prune([ParquetStore(tmp_path)], timedelta(days=1), now=datetime.now(UTC))
    assert unfinished.exists()  # recent: may still be being written
    prune([ParquetStore(tmp_path)], timedelta(seconds=1), now=datetime.now(UTC) + timedelta(1))
    assert not unfinished.exists()


def test_an_idle_logger_still_finishes_parts_by_age(tmp_path: Path) -> None:
    logger = PredictionLogger(
        [ParquetSink(tmp_path, max_age_s=0.0)], hash_key=KEY, flush_interval_s=0.01
    )
    logger.emit(event(0))
    for _ in range(500):  # the idle tick comes within a second or two
        if list(parts(tmp_path)):
            break
        time.sleep(0.01)
    assert len(list(parts(tmp_path))) == 1
    logger.close()


def test_the_serve_default_roll_is_the_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Written out in serve_settings (it loads before pyarrow may): the two must not drift.
    monkeypatch.delenv("SHIPYARD_SERVE_LOG_ROLL_S", raising=False)
    assert ServeSettings().log_roll_s == DEFAULT_ROLL_S
