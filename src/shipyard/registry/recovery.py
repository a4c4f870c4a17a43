"""Declaring interrupted registrations FAILED.

A PENDING version whose registering process died (kill -9, power loss) would stay PENDING
forever. On open, the registry fails those whose owner process on this host is gone, and
those owned by another host that made no progress within the lease.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from shipyard.core.errors import Unavailable
from shipyard.registry import ledger
from shipyard.registry.models import VersionStatus
from shipyard.registry.queries import require_model
from shipyard.storage.database import Database
from shipyard.storage.tables import ModelRow, VersionRow, utcnow

log = logging.getLogger(__name__)

PENDING_LEASE = timedelta(hours=1)
PENDING = VersionStatus.PENDING.value


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    name: str
    version: int
    host: str
    pid: int
    created_at: datetime


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def why_stale(pending: Pending, host: str, now: datetime, lease: timedelta) -> str | None:
    """The reason `pending` is abandoned, or None while its owner may still finish it."""
    if pending.host == host and not process_alive(pending.pid):
        return (
            f"registration interrupted (process {pending.pid} on {host} exited before it finished)"
        )
    if now - pending.created_at > lease:
        return (
            f"registration interrupted (process {pending.pid} on {pending.host} "
            f"did not finish within {lease})"
        )
    return None


def _pending(database: Database) -> list[Pending]:
    statement = (
        select(
            VersionRow.id,
            ModelRow.name,
            VersionRow.version,
            VersionRow.owner_host,
            VersionRow.owner_pid,
            VersionRow.created_at,
        )
        .join(ModelRow, ModelRow.id == VersionRow.model_id)
        .where(VersionRow.status == PENDING)
    )
    with database.read() as session:
        return [Pending(*row) for row in session.execute(statement)]


def fail_interrupted(
    database: Database, *, actor: str, host: str, lease: timedelta = PENDING_LEASE
) -> list[str]:
    """Mark abandoned PENDING versions FAILED; returns their refs. Best effort: if the database
    is busy now, the next open tries again."""
    now = utcnow()
    stale = [(p, why) for p in _pending(database) if (why := why_stale(p, host, now, lease))]
    if not stale:
        return []
    failed: list[str] = []
    try:
        with database.write() as session:
            for pending, why in stale:
                require_model(session, pending.name, lock=True)
                row = session.get(VersionRow, pending.id)
                if row is None or row.status != PENDING:
                    continue  # finished or failed meanwhile
                row.status = VersionStatus.FAILED.value
                row.status_reason = why
                details = {"error": why, "owner_host": pending.host, "owner_pid": pending.pid}
                ledger.append(
                    session,
                    actor=actor,
                    action="version.failed",
                    model=pending.name,
                    version=pending.version,
                    details=details,
                )
                failed.append(f"{pending.name}:{pending.version}")
    except Unavailable as exc:
        log.warning("could not fail interrupted registrations now: %s", exc)
        return []
    return failed
