"""Response bodies of the management API (they are its OpenAPI schema) and their converters
from the registry's and rollouts' dataclasses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shipyard.auth.audit import AuditEntry
from shipyard.auth.keys import ApiKey
from shipyard.registry.models import AliasMove, LedgerEntry, Model, ModelVersion
from shipyard.rollouts.progress import Rollout
from shipyard.rollouts.spec import Deployment, Revision


class ModelOut(BaseModel):
    name: str
    description: str | None
    tags: dict[str, str]
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]
    archived: bool

    @classmethod
    def of(cls, m: Model) -> ModelOut:
        return cls(
            name=m.name, description=m.description, tags=m.tags, created_at=m.created_at,
            latest_version=m.latest_version, aliases=m.aliases, archived=m.archived,
        )  # fmt: skip


class ArtifactOut(BaseModel):
    sha256: str
    size: int


class VersionOut(BaseModel):
    name: str
    version: int
    ref: str
    status: str
    status_reason: str | None
    flavor: str
    created_at: datetime
    creator: str
    description: str | None
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float]
    signature: dict[str, Any] | None
    lineage: dict[str, Any]
    artifacts: dict[str, ArtifactOut]
    compiled: dict[str, Any] | None
    aliases: list[str]
    archived: bool
    stage: str | None

    @classmethod
    def of(cls, v: ModelVersion) -> VersionOut:
        artifacts = {k: ArtifactOut(sha256=a.sha256, size=a.size) for k, a in v.artifacts.items()}
        return cls(
            name=v.name, version=v.version, ref=v.ref, status=v.status.value,
            status_reason=v.status_reason, flavor=v.flavor, created_at=v.created_at,
            creator=v.creator, description=v.description, tags=v.tags, params=v.params,
            metrics=v.metrics, signature=v.signature, lineage=v.lineage.to_dict(),
            artifacts=artifacts, compiled=v.compiled, aliases=list(v.aliases),
            archived=v.archived, stage=v.stage,
        )  # fmt: skip


class AliasMoveOut(BaseModel):
    name: str
    alias: str
    version: int | None
    previous: int | None
    at: datetime
    actor: str
    reason: str | None

    @classmethod
    def of(cls, m: AliasMove) -> AliasMoveOut:
        return cls(
            name=m.name, alias=m.alias, version=m.version, previous=m.previous, at=m.at,
            actor=m.actor, reason=m.reason,
        )  # fmt: skip


class LedgerOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None
    deployment: str | None
    details: dict[str, Any]
    reason: str | None

    @classmethod
    def of(cls, e: LedgerEntry) -> LedgerOut:
        return cls(
            id=e.id, at=e.at, actor=e.actor, action=e.action, model=e.model, version=e.version,
            deployment=e.deployment, details=e.details, reason=e.reason,
        )  # fmt: skip


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> KeyOut:
        return cls(
            id=k.id, name=k.name, scopes=[s.value for s in k.scopes], created_at=k.created_at,
            created_by=k.created_by, last_used_at=k.last_used_at, expires_at=k.expires_at,
            revoked_at=k.revoked_at,
        )  # fmt: skip


class KeyCreated(BaseModel):
    key: KeyOut
    token: str  # shown here, once; only its digest is stored


class RevisionOut(BaseModel):
    deployment: str
    number: int
    spec: dict[str, Any]  # strategy, variants [{model, version, weight}], shadow, ...
    created_at: datetime
    actor: str
    reason: str | None

    @classmethod
    def of(cls, r: Revision) -> RevisionOut:
        return cls(
            deployment=r.deployment, number=r.number, spec=r.spec.to_json(),
            created_at=r.created_at, actor=r.actor, reason=r.reason,
        )  # fmt: skip


class DeploymentOut(BaseModel):
    name: str
    description: str | None
    created_at: datetime
    created_by: str
    revision: RevisionOut

    @classmethod
    def of(cls, d: Deployment) -> DeploymentOut:
        return cls(
            name=d.name, description=d.description, created_at=d.created_at,
            created_by=d.created_by, revision=RevisionOut.of(d.revision),
        )  # fmt: skip


class RolloutOut(BaseModel):
    id: int
    deployment: str
    state: str
    active: bool
    policy: dict[str, Any]
    baseline: dict[str, Any]
    candidate: dict[str, Any]
    step: int
    weight: int
    windows: int
    window_started_at: datetime
    started_at: datetime
    updated_at: datetime
    actor: str
    decisions: list[dict[str, Any]]

    @classmethod
    def of(cls, r: Rollout) -> RolloutOut:
        return cls(
            id=r.id, deployment=r.deployment, state=r.state.value, active=r.active,
            policy=r.policy.to_json(), baseline=r.baseline.to_json(),
            candidate=r.candidate.to_json(), step=r.step, weight=r.weight, windows=r.windows,
            window_started_at=r.window_started_at, started_at=r.started_at,
            updated_at=r.updated_at, actor=r.actor,
            decisions=[d.to_json() for d in r.decisions],
        )  # fmt: skip


class RolloutStatus(BaseModel):
    """The active rollout of a deployment, or null when there is none."""

    rollout: RolloutOut | None


class FeedbackResult(BaseModel):
    accepted: int  # newly stored
    unmatched: list[str]  # request ids with no logged prediction (yet)
    unchanged: int = 0  # given before with the same value: a safe retry, nothing stored
    unmatched_keys: list[str] = []  # business keys no logged prediction carries yet: not stored


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    remote: str | None
    status: int
    details: dict[str, Any]

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(
            id=e.id, at=e.at, actor=e.actor, action=e.action, target=e.target, remote=e.remote,
            status=e.status, details=e.details,
        )  # fmt: skip
