"""Loading registry rows and turning them into the public record dataclasses."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.core.errors import FailedPrecondition, NotFound
from shipyard.core.lineage import Lineage
from shipyard.core.refs import ModelRef
from shipyard.registry.models import AliasMove, Artifact, Model, ModelVersion, VersionStatus
from shipyard.storage.deployments_table import DeploymentRow, RevisionRow
from shipyard.storage.tables import AliasMoveRow, AliasRow, ArtifactRow, ModelRow, VersionRow

READY = VersionStatus.READY.value


def find_model(session: Session, name: str, *, lock: bool = False) -> ModelRow | None:
    statement = select(ModelRow).where(ModelRow.name == name)
    if lock:
        # Serialises every change to one model on PostgreSQL (SQLite has one writer anyway).
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def require_model(session: Session, name: str, *, lock: bool = False) -> ModelRow:
    model = find_model(session, name, lock=lock)
    if model is None:
        raise NotFound(f"model {name!r} not found")
    return model


def require_version(session: Session, model: ModelRow, version: int) -> VersionRow:
    statement = select(VersionRow).where(
        VersionRow.model_id == model.id, VersionRow.version == version
    )
    row = session.scalars(statement).one_or_none()
    if row is None:
        raise NotFound(f"model {model.name!r} has no version {version}")
    return row


def require_ready(model: ModelRow, row: VersionRow) -> None:
    if row.status != READY:
        why = f" ({row.status_reason})" if row.status_reason else ""
        raise FailedPrecondition(f"{model.name}:{row.version} is {row.status}{why}, not READY")


def latest_ready(session: Session, model: ModelRow) -> VersionRow | None:
    statement = (
        select(VersionRow)
        .where(
            VersionRow.model_id == model.id,
            VersionRow.status == READY,
            VersionRow.archived.is_(False),
            VersionRow.stage.is_(None),
        )
        .order_by(VersionRow.version.desc())
        .limit(1)
    )
    return session.scalars(statement).first()


def resolve_row(session: Session, model: ModelRow, ref: ModelRef) -> VersionRow:
    """The READY version row `ref` names: by alias, by number, or the latest released."""
    if ref.alias is not None:
        alias = find_alias(session, model, ref.alias)
        if alias is None:
            raise NotFound(f"model {ref.name!r} has no alias {ref.alias!r}")
        row = require_version(session, model, alias.version)
    elif ref.version is not None:
        row = require_version(session, model, ref.version)
    else:
        latest = latest_ready(session, model)
        if latest is None:
            raise NotFound(f"model {ref.name!r} has no READY version")
        row = latest
    require_ready(model, row)
    return row


def find_alias(session: Session, model: ModelRow, alias: str) -> AliasRow | None:
    return session.get(AliasRow, (model.id, alias))


def aliases_by_model(session: Session, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {model_id: {} for model_id in model_ids}
    statement = select(AliasRow).where(AliasRow.model_id.in_(model_ids)).order_by(AliasRow.alias)
    for row in session.scalars(statement):
        found[row.model_id][row.alias] = row.version
    return found


def to_versions(
    session: Session, model: ModelRow, rows: Sequence[VersionRow]
) -> list[ModelVersion]:
    """Records for `rows` of one model, loading artifacts and aliases in two queries."""
    artifacts: dict[int, dict[str, Artifact]] = {row.id: {} for row in rows}
    statement = (
        select(ArtifactRow)
        .where(ArtifactRow.version_id.in_(list(artifacts)))
        .order_by(ArtifactRow.name)
    )
    for artifact in session.scalars(statement):
        artifacts[artifact.version_id][artifact.name] = Artifact(artifact.sha256, artifact.size)
    pointing: dict[int, list[str]] = {}
    for alias, number in aliases_by_model(session, [model.id])[model.id].items():
        pointing.setdefault(number, []).append(alias)
    return [
        _to_version(model, row, artifacts[row.id], tuple(pointing.get(row.version, ())))
        for row in rows
    ]


def to_version(session: Session, model: ModelRow, row: VersionRow) -> ModelVersion:
    return to_versions(session, model, [row])[0]


def _to_version(
    model: ModelRow, row: VersionRow, artifacts: dict[str, Artifact], aliases: tuple[str, ...]
) -> ModelVersion:
    return ModelVersion(
        name=model.name,
        version=row.version,
        status=VersionStatus(row.status),
        flavor=row.flavor,
        created_at=row.created_at,
        creator=row.creator,
        description=row.description,
        tags=dict(row.tags),
        params=dict(row.params),
        metrics=dict(row.metrics),
        signature=row.signature,
        lineage=Lineage.from_dict(row.lineage),
        artifacts=artifacts,
        flavor_meta=dict(row.flavor_meta),
        compiled=row.compiled,
        aliases=aliases,
        archived=row.archived,
        status_reason=row.status_reason,
        stage=row.stage,
    )


def to_models(session: Session, rows: Sequence[ModelRow]) -> list[Model]:
    ids = [row.id for row in rows]
    aliases = aliases_by_model(session, ids)
    latest_statement = (
        select(VersionRow.model_id, func.max(VersionRow.version))
        .where(
            VersionRow.model_id.in_(ids),
            VersionRow.status == READY,
            VersionRow.archived.is_(False),
        )
        .group_by(VersionRow.model_id)
    )
    latest = {model_id: number for model_id, number in session.execute(latest_statement)}
    return [
        Model(
            name=row.name,
            description=row.description,
            tags=dict(row.tags),
            created_at=row.created_at,
            latest_version=latest.get(row.id),
            aliases=aliases[row.id],
            archived=row.archived,
        )
        for row in rows
    ]


def to_model(session: Session, row: ModelRow) -> Model:
    return to_models(session, [row])[0]


def to_move(name: str, row: AliasMoveRow) -> AliasMove:
    return AliasMove(
        name=name,
        alias=row.alias,
        version=row.version,
        previous=row.previous,
        at=row.at,
        actor=row.actor,
        reason=row.reason,
    )


def deployments_routing_to(session: Session, name: str, version: int) -> list[str]:
    """Deployments whose current revision sends traffic (or a shadow copy) to name:version."""
    statement = select(DeploymentRow.name, RevisionRow.spec).join(
        RevisionRow,
        (RevisionRow.deployment_id == DeploymentRow.id)
        & (RevisionRow.number == DeploymentRow.revision),
    )
    found = []
    for deployment, spec in session.execute(statement):
        targets = [*spec.get("variants", []), spec.get("shadow") or {}]
        if any(t.get("model") == name and t.get("version") == version for t in targets):
            found.append(deployment)
    return sorted(found)
