"""The prediction log read from the table sink too (SQLite and PostgreSQL): what replicas on
other machines log there reads exactly like the Parquet files, and an event in both is read
once; pages of a large window read each event once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from eventlog_support import event

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog import ParquetSink, TableSink, iter_events, read_events
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


def test_pages_cover_a_window_once_across_files_table_and_shared_timestamps(
    registry: Registry, tmp_path: Path
) -> None:
    """iter_events pages: every event of the window exactly once, newest first, although
    groups of events share one timestamp across page boundaries, some live in both stores,
    and another version's events are filtered out in the query."""
    batch = []
    for i in range(23):  # timestamps in groups of three: ties straddle every page boundary
        e = event(i, at=NOON, age=timedelta(seconds=i // 3))
        batch.append(dataclasses.replace(e, version=2 if i % 5 == 4 else 1))
    sink = ParquetSink(tmp_path)
    sink.write(batch[:15])
    sink.close()
    TableSink(registry.database).write(batch[10:])  # 10-14 in both stores
    wanted = [e for e in batch if e.version == 1]
    expected = sorted(wanted, key=lambda e: (-e.at.timestamp(), e.event_id))
    pages = list(
        iter_events(tmp_path, model="fraud", version=1, database=registry.database, chunk=4)
    )
    assert [p["event_id"].nunique() for p in pages] == [4, 4, 4, 4, 3]
    read = [i for page in pages for i in dict.fromkeys(page["event_id"])]
    assert read == [e.event_id for e in expected]
    assert set(pd.concat(pages)["version"]) == {1}
    assert list(iter_events(tmp_path, model="other", database=registry.database, chunk=4)) == []
