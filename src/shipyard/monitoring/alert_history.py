"""Alert history in the `alerts` table: what fired and resolved, when, and why.

history = AlertHistory(database)
history.list(subject="fraud", since=yesterday)   # newest first
history.firing("fraud")                          # rules whose latest transition is firing
"""

from __future__ import annotations

import builtins
from datetime import datetime

import orjson
from sqlalchemy import select

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.alerts import FIRING, Alert
from shipyard.storage.database import Database
from shipyard.storage.monitoring_table import AlertRow

MAX_LIST = 10_000


class AlertHistory:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, alert: Alert) -> None:
        # Through JSON once: numpy numbers become plain ones, NaN/inf become null (PostgreSQL
        # JSON rejects them).
        raw = {**alert.details, "notified": alert.notified}
        options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        details = orjson.loads(orjson.dumps(raw, option=options, default=str))
        with self.database.write() as session:
            session.add(
                AlertRow(
                    at=alert.at, rule=alert.rule, subject=alert.subject, state=alert.state,
                    severity=alert.severity, message=alert.message, details=details,
                )
            )  # fmt: skip

    def list(
        self,
        *,
        subject: str | None = None,
        since: datetime | None = None,
        rule: str | None = None,
        limit: int = 1000,
    ) -> builtins.list[Alert]:
        if not 1 <= limit <= MAX_LIST:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST}, got {limit}")
        if since is not None and since.tzinfo is None:
            raise InvalidArgument("since must be timezone-aware (e.g. datetime.now(UTC))")
        query = select(AlertRow).order_by(AlertRow.at.desc(), AlertRow.id.desc()).limit(limit)
        if subject is not None:
            query = query.where(AlertRow.subject == subject)
        if since is not None:
            query = query.where(AlertRow.at >= since)
        if rule is not None:
            query = query.where(AlertRow.rule == rule)
        with self.database.read() as session:
            return [_alert(row) for row in session.scalars(query)]

    def firing(self, subject: str) -> builtins.list[Alert]:
        """The latest firing alert of each rule still firing for `subject`."""
        latest: dict[str, Alert] = {}
        for alert in self.list(subject=subject, limit=MAX_LIST):
            latest.setdefault(alert.rule, alert)
        return [a for a in latest.values() if a.state == FIRING]


def _alert(row: AlertRow) -> Alert:
    details = dict(row.details)
    notified = bool(details.pop("notified", False))
    return Alert(
        row.rule, row.subject, row.state, row.severity, row.message, row.at, details, notified
    )
