"""Load reports: which revision a data plane could not apply, told to the control plane.

A watcher that cannot load a version a new revision needs keeps routing the previous revision;
alone, that is visible only on its own plane, and the rollout controller would see a canary
without traffic and wait out its analysis windows. So the plane writes a row to
`load_failures` per (deployment, revision, plane), upserted, and deletes its rows once it
applies that revision or a later one. A report also deletes every plane's rows of older
revisions of the same deployment (the deployment has moved on), so the table holds about one
row per deployment and plane. The controller reads the rows of each deployment's current
revision (`current`) and rolls back a rollout whose candidate is in them.

The writes are blocking; the watcher runs them in a thread and never lets them fail it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from shipyard.storage.database import Database
from shipyard.storage.deployments_table import DeploymentRow
from shipyard.storage.load_failures_table import LoadFailureRow
from shipyard.storage.tables import utcnow

MAX_REASON = 500  # per version: a reason is one line, not a traceback
MAX_VERSIONS = 8  # a revision holds a baseline, a candidate and maybe a shadow


@dataclass(frozen=True, slots=True)
class LoadFailure:
    deployment: str
    revision: int
    plane: str  # hostname:pid
    reason: str  # every failed version with its reason, one line
    versions: dict[str, str]  # ref ("fraud:2") -> why it did not load
    at: datetime


def describe(versions: Mapping[str, str]) -> str:
    """The one-line reason: "fraud:2: why; fraud:3: why"."""
    return "; ".join(f"{ref}: {why}" for ref, why in versions.items())


class LoadReports:
    """One data plane's reports (`plane` names it, as in route_stats)."""

    def __init__(self, database: Database, plane: str) -> None:
        self._database = database
        self.plane = plane[:64]

    def failed(self, deployment: str, revision: int, versions: Mapping[str, str]) -> None:
        """`revision` of `deployment` could not be applied: `versions` did not load."""
        kept = {ref: why[:MAX_REASON] for ref, why in list(versions.items())[:MAX_VERSIONS]}
        values: dict[str, Any] = {
            "deployment": deployment,
            "revision": revision,
            "plane": self.plane,
            "reason": describe(kept),
            "versions": kept,
            "at": utcnow(),
        }
        dialect = postgresql if self._database.is_postgres else sqlite
        upsert = dialect.insert(LoadFailureRow).values(values)
        upsert = upsert.on_conflict_do_update(
            index_elements=["deployment", "revision", "plane"],
            set_={k: upsert.excluded[k] for k in ("reason", "versions", "at")},
        )
        with self._database.write() as session:
            session.execute(
                delete(LoadFailureRow).where(
                    LoadFailureRow.deployment == deployment, LoadFailureRow.revision < revision
                )
            )
            session.execute(upsert)

    def applied(self, deployment: str, revision: int) -> None:
        """This plane now routes `deployment` by `revision`: its older reports are void."""
        with self._database.write() as session:
            session.execute(
                delete(LoadFailureRow).where(
                    LoadFailureRow.deployment == deployment,
                    LoadFailureRow.plane == self.plane,
                    LoadFailureRow.revision <= revision,
                )
            )


def current(database: Database, deployment: str) -> list[LoadFailure]:
    """The reports against `deployment`'s current revision, oldest first."""
    statement = (
        select(LoadFailureRow)
        .join(
            DeploymentRow,
            and_(
                DeploymentRow.name == LoadFailureRow.deployment,
                DeploymentRow.revision == LoadFailureRow.revision,
            ),
        )
        .where(LoadFailureRow.deployment == deployment)
        .order_by(LoadFailureRow.id)
    )
    with database.read() as session:
        return [
            LoadFailure(
                row.deployment, row.revision, row.plane, row.reason, dict(row.versions), row.at
            )
            for row in session.scalars(statement)
        ]


def prune(database: Database, older_than: datetime) -> int:
    """Delete reports written before `older_than` (those of planes that died without a later
    report); returns how many."""
    with database.write() as session:
        result: Any = session.execute(delete(LoadFailureRow).where(LoadFailureRow.at < older_than))
        return int(result.rowcount)
