"""The default sink: rolling Parquet files under HOME/events, queried in place with DuckDB.

Layout: `events/<model>/date=YYYY-MM-DD/part-<time>-<uuid>.parquet`. A part is written to a
hidden temporary file next to it and renamed once complete (closed, fsynced), so readers only
ever see whole files. A part rolls when it reaches `max_bytes`, when it is `max_age_s` old,
when a batch does not fit its schema (a new column, a changed type), and on close.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog.columns import conform, to_table
from shipyard.storage.paths import contained

EVENTS_DIR = "events"
PART_GLOB = "part-*.parquet"


def model_dir(home: Path, model: str) -> Path:
    """HOME/events/<model>, refusing names that would leave it."""
    return contained(home / EVENTS_DIR, model)


def parts(home: Path, model: str | None = None) -> Iterator[Path]:
    """Every finished part file (of one model, or of all)."""
    base = model_dir(home, model) if model is not None else home / EVENTS_DIR
    if not base.is_dir():
        return iter(())
    pattern = f"date=*/{PART_GLOB}" if model is not None else f"*/date=*/{PART_GLOB}"
    return iter(sorted(base.glob(pattern)))


def partition_date(part: Path) -> date:
    return date.fromisoformat(part.parent.name.removeprefix("date="))


def replace_atomically(table: pa.Table, target: Path) -> None:
    """Write `table` to `target` via a temporary file, fsync, rename."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    _fsync(tmp)
    os.replace(tmp, target)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Part:
    writer: pq.ParquetWriter
    tmp: Path
    final: Path
    schema: pa.Schema
    opened: float


# How long a part stays open at most: readers see only finished parts, so this is how late
# an event can become visible to the monitoring loop, feedback joins and erasure.
DEFAULT_ROLL_S = 300.0


class ParquetSink:
    def __init__(
        self,
        home: Path,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = DEFAULT_ROLL_S,
        name: str = "parquet",
    ) -> None:
        self.home = home
        self.name = name
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._open: dict[tuple[str, date], _Part] = {}

    def write(self, events: Sequence[PredictionEvent]) -> None:
        groups: dict[tuple[str, date], list[PredictionEvent]] = defaultdict(list)
        for event in events:
            groups[(event.model, event.at.astimezone(UTC).date())].append(event)
        for key, group in groups.items():
            self._append(key, to_table(group))
        self._roll_old()

    def tick(self) -> None:
        """Called by the logger when idle: finish parts that reached `max_age_s`."""
        self._roll_old()

    def close(self) -> None:
        for key in list(self._open):
            self._roll(key)

    def _append(self, key: tuple[str, date], table: pa.Table) -> None:
        part = self._open.get(key)
        if part is not None:
            fitted = conform(table, part.schema)
            if fitted is None:
                self._roll(key)
                part = None
            else:
                table = fitted
        if part is None:
            part = self._start(key, table.schema)
        part.writer.write_table(table)
        if part.tmp.stat().st_size >= self.max_bytes:
            self._roll(key)

    def _start(self, key: tuple[str, date], schema: pa.Schema) -> _Part:
        model, day = key
        folder = model_dir(self.home, model) / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        final = folder / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".{final.name}.tmp"
        part = _Part(pq.ParquetWriter(tmp, schema), tmp, final, schema, time.monotonic())
        self._open[key] = part
        return part

    def _roll(self, key: tuple[str, date]) -> None:
        part = self._open.pop(key)
        part.writer.close()
        _fsync(part.tmp)
        os.replace(part.tmp, part.final)

    def _roll_old(self) -> None:
        now = time.monotonic()
        for key, part in list(self._open.items()):
            if now - part.opened >= self.max_age_s:
                self._roll(key)
