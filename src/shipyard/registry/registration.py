"""The steps of registering a version: reserve (PENDING), store blobs, mark READY or FAILED.

Each step is its own transaction. The PENDING row is committed before the first blob is
written and records its owner (host, pid), so a registration killed at any point leaves
either nothing READY or a version whose blobs are all durable; recovery.py fails the rest.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, FailedPrecondition, Unavailable
from shipyard.registry import ledger, queries
from shipyard.registry.models import Artifact, ModelVersion, VersionStatus
from shipyard.storage.blobs import BlobStore
from shipyard.storage.database import Database
from shipyard.storage.tables import ArtifactRow, ModelRow, VersionRow, utcnow

log = logging.getLogger(__name__)

PENDING = VersionStatus.PENDING.value


def failure_reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "")
    return text[:1000]


@dataclass
class Registration:
    database: Database
    blobs: BlobStore
    actor: str
    host: str = field(default_factory=socket.gethostname)

    def ensure_model(self, session: Session, name: str) -> tuple[ModelRow, bool]:
        """Create the model row if absent (concurrent creators both succeed, one inserts);
        returns the row and whether this call created it."""
        table = ModelRow.__table__
        statement = (
            self.database.insert_ignoring(table)
            .values(name=name, tags={}, created_at=utcnow(), last_version=0, archived=False)
            .returning(table.c.id)
        )
        # RETURNING yields a row only if this call inserted it (rowcount is unreliable here).
        created = session.execute(statement).first() is not None
        return queries.require_model(session, name, lock=True), created

    def reserve(self, name: str, values: dict[str, Any]) -> tuple[int, bool]:
        """Commit a PENDING row under a freshly allocated number before any blob is written.
        Returns the number and whether the model is new. No ledger entry yet: the outcome
        (version.registered or version.failed) is recorded when it is known."""
        with self.database.write() as session:
            model, created = self.ensure_model(session, name)
            if model.archived:
                raise FailedPrecondition(f"model {name!r} is archived; it takes no new versions")
            # The counter row is locked by this UPDATE: concurrent registrations get
            # distinct, contiguous numbers on both backends.
            allocate = (
                update(ModelRow)
                .where(ModelRow.id == model.id)
                .values(last_version=ModelRow.last_version + 1)
                .returning(ModelRow.last_version)
            )
            number = int(session.execute(allocate).scalar_one())
            session.add(
                VersionRow(
                    model_id=model.id,
                    version=number,
                    status=PENDING,
                    created_at=utcnow(),
                    creator=self.actor,
                    archived=False,
                    owner_host=self.host,
                    owner_pid=os.getpid(),
                    **values,
                )
            )
            ledger.bump_revision(session)
        return number, created

    def store(self, sources: dict[str, Path]) -> dict[str, Artifact]:
        stored: dict[str, Artifact] = {}
        for logical, path in sources.items():
            blob = self.blobs.put_file(path)
            stored[logical] = Artifact(blob.sha256, blob.size)
        return stored

    def mark_ready(
        self,
        name: str,
        number: int,
        stored: dict[str, Artifact],
        reason: str | None,
        new_model: bool,
    ) -> ModelVersion:
        missing = [logical for logical, a in stored.items() if not self.blobs.exists(a.sha256)]
        if missing:
            raise Unavailable(f"the blob store lost {', '.join(missing)} of {name}:{number}")
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            row = queries.require_version(session, model, number)
            if row.status != PENDING:
                raise Conflict(
                    f"{name}:{number} is {row.status} ({row.status_reason}), not PENDING"
                )
            session.add_all(
                ArtifactRow(version_id=row.id, name=logical, sha256=a.sha256, size=a.size)
                for logical, a in stored.items()
            )
            row.status = VersionStatus.READY.value
            details = {
                "flavor": row.flavor,
                "artifacts": {logical: a.sha256 for logical, a in stored.items()},
                "new_model": new_model,
            }
            ledger.append(
                session,
                actor=self.actor,
                action="version.registered",
                model=name,
                version=number,
                details=details,
                reason=reason,
            )
            return queries.to_version(session, model, row)

    def mark_failed(self, name: str, number: int, exc: BaseException) -> None:
        why = failure_reason(exc)
        try:
            with self.database.write() as session:
                model = queries.require_model(session, name, lock=True)
                row = queries.require_version(session, model, number)
                if row.status != PENDING:
                    return
                row.status = VersionStatus.FAILED.value
                row.status_reason = why
                ledger.append(
                    session,
                    actor=self.actor,
                    action="version.failed",
                    model=name,
                    version=number,
                    details={"error": why},
                )
        except Exception:
            # Left PENDING: the next open declares it interrupted once this process is gone.
            log.warning("could not mark %s:%d FAILED", name, number, exc_info=True)
