"""The prediction log read from the table sink too (SQLite and PostgreSQL): what replicas on
other machines log there reads exactly like the Parquet files, and an event in both is read
once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from eventlog_support import event

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog import ParquetSink, TableSink, read_events
from shipyard.registry.service import Registry

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _events(first: int, count: int) -> list[PredictionEvent]:
    return [event(i, at=NOON, age=timedelta(minutes=i)) for i in range(first, first + count)]


def test_the_table_reads_like_the_files(registry: Registry, tmp_path: Path) -> None:
    batch = _events(0, 6)
    sink = ParquetSink(tmp_path / "files")
    sink.write(batch)
    sink.close()
    TableSink(registry.database).write(batch)
    from_files = read_events(tmp_path / "files", model="fraud")
    from_table = read_events(tmp_path / "empty", model="fraud", database=registry.database)
    pd.testing.assert_frame_equal(from_files, from_table, check_dtype=False)
    newest_two = read_events(
        tmp_path / "empty",
        since=NOON - timedelta(minutes=3),
        until=NOON,
        limit=2,
        database=registry.database,
    )
    assert list(newest_two["request_id"]) == ["req-1", "req-2"]


def test_files_and_table_are_unioned_and_an_event_in_both_is_read_once(
    registry: Registry, tmp_path: Path
) -> None:
    batch = _events(0, 4)
    sink = ParquetSink(tmp_path)
    sink.write(batch[:3])  # this machine's server
    sink.close()
    TableSink(registry.database).write(batch[2:])  # a replica's, one event also in the files
    both = read_events(tmp_path, model="fraud", database=registry.database)
    assert list(both["request_id"]) == ["req-0", "req-1", "req-2", "req-3"]
    assert list(read_events(tmp_path, model="fraud")["request_id"]) == ["req-0", "req-1", "req-2"]
    assert read_events(tmp_path, model="other", database=registry.database).empty
