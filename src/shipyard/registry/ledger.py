"""Appending to the ledger and bumping the revision counter, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from shipyard.registry.models import LedgerEntry
from shipyard.storage.tables import LedgerRow, StateRow, utcnow


def bump_revision(session: Session) -> int:
    """Increment the change counter. Call it last in a transaction: on PostgreSQL it takes the
    one global row lock, so taking it after any model lock keeps the lock order deadlock-free."""
    statement = (
        update(StateRow)
        .where(StateRow.id == 1)
        .values(revision=StateRow.revision + 1)
        .returning(StateRow.revision)
    )
    return int(session.execute(statement).scalar_one())


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    model: str | None = None,
    version: int | None = None,
    deployment: str | None = None,
    details: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> LedgerEntry:
    row = LedgerRow(
        at=utcnow(),
        actor=actor,
        action=action,
        model=model,
        version=version,
        deployment=deployment,
        details=dict(details or {}),
        reason=reason,
        revision=bump_revision(session),
    )
    session.add(row)
    session.flush()
    return to_entry(row)


def to_entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        model=row.model,
        version=row.version,
        details=dict(row.details),
        reason=row.reason,
        deployment=row.deployment,
    )
