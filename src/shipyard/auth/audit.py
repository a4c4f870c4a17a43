"""The audit log: who did what, to what, from where, with what outcome (security.md, issue 5).

The management API writes one entry for every authentication failure (401/403) and every
state-changing call, whatever its outcome. Unlike the ledger (what changed and why), the audit
log records attempts, refused ones included. Entries never hold secrets or request bodies: the
API passes only the route template, a target name and the key id; as a second line of defence
anything shaped like an API token is masked before it is stored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.registry import checks
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import AuditRow
from shipyard.storage.tables import utcnow

__all__ = ["ANONYMOUS", "AuditEntry", "AuditLog", "mask_secrets"]

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Column widths of audit_log (storage/deployments_table.py).
_WIDTH = {"actor": 200, "action": 200, "target": 500, "remote": 100}
# `sy_<id>_<secret>` and anything that starts like one: the id may stay, the rest may not.
_TOKEN = re.compile(r"sy_([0-9a-f]{12})_[A-Za-z0-9_\-]*")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    remote: str | None
    status: int
    details: dict[str, Any]


def mask_secrets(text: str) -> str:
    """`text` with every API token reduced to its public id (`sy_<id>_***`)."""
    return _TOKEN.sub(lambda m: f"sy_{m.group(1)}_***", text)


def _clean(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    masked = mask_secrets(value)
    # Printable only (no control sequences in terminals that show the log), cut to the column.
    shown = "".join(ch if ch.isprintable() else "?" for ch in masked)
    width = _WIDTH[field]
    return shown if len(shown) <= width else shown[: width - 3] + "..."


def _clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if isinstance(value, str):
            clean[str(key)] = _clean(value, "target")
        elif value is None or isinstance(value, bool | int | float):
            clean[str(key)] = value
        else:  # nested values are not expected; keep only a masked text form
            clean[str(key)] = _clean(str(value), "target")
    return clean


def _to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        remote=row.remote,
        status=row.status,
        details=dict(row.details),
    )


class AuditLog:
    """Append to and query the audit_log table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(
        self,
        *,
        actor: str,
        action: str,
        status: int,
        target: str | None = None,
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        row = AuditRow(
            at=utcnow(),
            actor=_clean(actor, "actor") or ANONYMOUS,
            action=_clean(action, "action") or "?",
            target=_clean(target, "target"),
            remote=_clean(remote, "remote"),
            status=int(status),
            details=_clean_details(details),
        )
        with self.database.write() as session:
            session.add(row)
            session.flush()
            return _to_entry(row)

    def try_record(self, **fields: Any) -> AuditEntry | None:
        """`record`, but a database failure is logged rather than raised: the caller's
        request has already been decided and must get its answer."""
        try:
            return self.record(**fields)
        except (Unavailable, SQLAlchemyError) as exc:
            log.error("could not write the audit log (%s): %s", type(exc).__name__, fields)
            return None

    def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        status: int | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[AuditEntry]:
        """Matching entries, newest first, at most `limit` (1 to 1000). `actor` matches a
        prefix (`key:<id>` finds that key whatever its name)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
        statement = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if actor is not None:
            prefix = checks.check_text(actor, "actor", 200)
            statement = statement.where(AuditRow.actor.startswith(prefix, autoescape=True))
        if action is not None:
            statement = statement.where(AuditRow.action == checks.check_text(action, "action", 200))
        if status is not None:
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status < 600:
                raise InvalidArgument(f"status must be an HTTP status code, got {status!r}")
            statement = statement.where(AuditRow.status == status)
        if since is not None:
            if since.tzinfo is None:
                raise InvalidArgument("since must include a timezone")
            statement = statement.where(AuditRow.at >= since)
        with self.database.read() as session:
            return [_to_entry(row) for row in session.scalars(statement)]
