"""Registry records as plain frozen dataclasses (no ORM objects leak out of the registry)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.core.lineage import Lineage


class VersionStatus(enum.Enum):
    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One stored file of a version: its logical name maps to a content-addressed blob."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """Everything packaging decided about a new version, before it is stored."""

    flavor: str
    signature: dict[str, Any] | None = None
    flavor_meta: dict[str, Any] = field(default_factory=dict)
    compiled: dict[str, Any] | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    # "candidate": registered by a retraining run, invisible to `name`/latest until released.
    stage: str | None = None


STAGES = ("candidate", "rejected")


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    status: VersionStatus
    flavor: str
    created_at: datetime
    creator: str
    description: str | None
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float]
    signature: dict[str, Any] | None
    lineage: Lineage
    artifacts: dict[str, Artifact]
    flavor_meta: dict[str, Any]
    compiled: dict[str, Any] | None
    aliases: tuple[str, ...] = ()
    archived: bool = False
    status_reason: str | None = None
    stage: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    description: str | None
    tags: dict[str, str]
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]
    archived: bool = False


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One entry of an alias's history. `version` None means the alias was deleted."""

    name: str
    alias: str
    version: int | None
    previous: int | None
    at: datetime
    actor: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """An append-only record of one change: who, when, what, why."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None
    details: dict[str, Any]
    reason: str | None = None
    deployment: str | None = None
