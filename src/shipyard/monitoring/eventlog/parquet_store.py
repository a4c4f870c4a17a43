"""Retention and erasure over the finished Parquet parts of HOME/events.

A part whose rows all go is deleted; a part that keeps some is rewritten atomically (temporary
file, fsync, rename), so a reader sees either the old or the new file, never half of one.
Parts still being written by a running server (hidden `.part-*.tmp`) are not touched: they
become visible within the sink's `max_age_s`, so run erasure again after that period.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.monitoring.eventlog.parquet import (
    EVENTS_DIR,
    PART_GLOB,
    partition_date,
    parts,
    replace_atomically,
)

# Rows of one part to remove, as a boolean mask over the part's table.
Selector = Callable[[pa.Table], pa.ChunkedArray]


class ParquetStore:
    name = "parquet"

    def __init__(self, home: Path) -> None:
        self.home = home

    def prune(self, before: datetime) -> int:
        """Rows older than `before`; also unfinished parts last touched before it (left by a
        process that died mid-part: unreadable, but still holding data)."""
        self._remove_stale_unfinished(before)
        removed = 0
        cutoff = pa.scalar(before.astimezone(UTC), type=pa.timestamp("us", tz="UTC"))
        for part in parts(self.home):
            day = partition_date(part)
            if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= before:
                removed += pq.read_metadata(part).num_rows
                part.unlink()
            elif day <= before.astimezone(UTC).date():
                removed += _remove_rows(part, lambda t: pc.less(t.column("at"), cutoff))
        return removed

    def _remove_stale_unfinished(self, before: datetime) -> None:
        root = self.home / EVENTS_DIR
        if not root.is_dir():
            return
        for stale in root.glob(f"*/date=*/.{PART_GLOB}*.tmp"):
            if stale.stat().st_mtime < before.timestamp():
                stale.unlink(missing_ok=True)

    def erase(self, subjects: Collection[str]) -> int:
        wanted = pa.array(sorted(subjects), pa.string())
        removed = 0
        for part in parts(self.home):
            removed += _remove_rows(part, lambda t: pc.is_in(t.column("subject"), wanted))
        return removed


def _remove_rows(part: Path, select: Selector) -> int:
    table = pq.read_table(part)
    mask = pc.fill_null(select(table), False)
    count = int(pc.sum(mask).as_py() or 0)
    if count == 0:
        return 0
    if count == table.num_rows:
        part.unlink()
    else:
        replace_atomically(table.filter(pc.invert(mask)), part)
    return count
