"""The database sink: table `prediction_events` (migration v0004), SQLite or PostgreSQL.

One multi-row INSERT per batch, in one transaction (an event id already stored is skipped). Retention and erasure are single DELETEs
on the indexed `at` / `subject` columns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Insert, and_, delete, or_, select

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog.columns import plain
from shipyard.storage.database import Database
from shipyard.storage.monitoring_table import PredictionEventRow


class TableSink:
    """Writes to, prunes and erases from `prediction_events`. Does not own `database`."""

    def __init__(self, database: Database, *, name: str = "table") -> None:
        self.database = database
        self.name = name

    def write(self, events: Sequence[PredictionEvent]) -> None:
        rows = [
            {
                "event_id": e.event_id,
                "request_id": e.request_id,
                "deployment": e.deployment,
                "model": e.model,
                "version": e.version,
                "at": e.at,
                "subject": e.subject,
                "inputs": {k: plain(v) for k, v in e.inputs.items()},
                "outputs": {k: plain(v) for k, v in e.outputs.items()},
                "latency_ms": e.latency_ms,
            }
            for e in events
        ]
        if rows:
            with self.database.write() as session:
                session.execute(self._insert(), rows)

    def _insert(self) -> Insert:
        """INSERT that skips an event id already stored (an event emitted twice), instead of
        failing the whole batch on the unique constraint."""
        return self.database.insert_ignoring(PredictionEventRow, ["event_id"])

    def close(self) -> None:
        pass

    def prune(self, before: datetime) -> int:
        with self.database.write() as session:
            result = session.execute(
                delete(PredictionEventRow).where(PredictionEventRow.at < before)
            )
            return int(getattr(result, "rowcount", 0))

    def erase(self, subjects: Collection[str]) -> int:
        with self.database.write() as session:
            result = session.execute(
                delete(PredictionEventRow).where(PredictionEventRow.subject.in_(subjects))
            )
            return int(getattr(result, "rowcount", 0))

    def models(self, since: datetime) -> list[str]:
        """Models with events stored at or after `since` (by the index on `at`)."""
        query = select(PredictionEventRow.model).where(PredictionEventRow.at >= since).distinct()
        with self.database.read() as session:
            return list(session.scalars(query))

    def events(
        self,
        *,
        model: str | None = None,
        deployment: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        version: int | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[PredictionEvent]:
        """Stored events with since <= at < until, newest first, at most `limit`; `after`
        starts past the (at, event_id) a previous page ended with."""
        query = select(PredictionEventRow)
        for column, value in (
            (PredictionEventRow.model, model),
            (PredictionEventRow.deployment, deployment),
            (PredictionEventRow.version, version),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(PredictionEventRow.at >= since)
        if until is not None:
            query = query.where(PredictionEventRow.at < until)
        # Ids in byte order, as DuckDB orders the merged page (PostgreSQL's default collation
        # may not be): pages of both sources must end at the same event.
        event_id: Any = PredictionEventRow.event_id
        if self.database.is_postgres:
            event_id = event_id.collate("C")
        if after is not None:
            at, last_id = after
            query = query.where(
                or_(
                    PredictionEventRow.at < at,
                    and_(PredictionEventRow.at == at, event_id > last_id),
                )
            )
        query = query.order_by(PredictionEventRow.at.desc(), event_id)
        if limit is not None:
            query = query.limit(limit)
        with self.database.read() as session:
            return [
                PredictionEvent(
                    request_id=r.request_id,
                    model=r.model,
                    version=r.version,
                    at=r.at,
                    inputs=r.inputs,
                    outputs=r.outputs,
                    latency_ms=r.latency_ms,
                    deployment=r.deployment,
                    subject=r.subject,
                    event_id=r.event_id,
                )
                for r in session.scalars(query)
            ]

    def recent(self, model: str, *, since: datetime | None = None, limit: int = 20) -> pd.DataFrame:
        """The newest events of `model`, one row per event (for `shipyard logs show`)."""
        columns = ["event_id", "request_id", "deployment", "model", "version", "at"]
        columns += ["subject", "latency_ms", "inputs", "outputs"]
        found = self.events(model=model, since=since, limit=limit)
        return pd.DataFrame([{c: getattr(e, c) for c in columns} for e in found], columns=columns)
