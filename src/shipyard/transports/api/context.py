"""What every management endpoint works with: the shared services and the calling key.

One Registry is opened per server; each request acts through a copy whose `actor` is the
calling key (`key:<id>`), so the ledger says which key made each change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fastapi import Request

from shipyard.auth.audit import AuditLog
from shipyard.auth.keys import ApiKey, KeyStore
from shipyard.registry.service import Registry
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.progress import Rollouts

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ApiOptions:
    max_upload_bytes: int = 256 * MiB  # a model file upload
    max_body_bytes: int = 1 * MiB  # any other request body
    max_feedback_items: int = 1000  # per POST /feedback
    # Uploads are staged here (None: the system temporary directory).
    staging_dir: str | None = None
    # SHIPYARD_HOME, where the prediction log is read for drift (None: drift is unavailable).
    home: Path | None = None
    # How long a drift view is served from memory (the UI polls it; 0: compute every time).
    drift_cache_s: float = 60.0


class Background(Protocol):
    """Something the control plane runs for its lifetime (the rollout controller): `run`
    goes on until cancelled, and must not block the event loop."""

    async def run(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Services:
    registry: Registry
    keys: KeyStore
    audit: AuditLog
    options: ApiOptions


def acting_as(registry: Registry, actor: str) -> Registry:
    """`registry` recording changes as `actor` (see Registry.as_actor)."""
    return registry.as_actor(actor)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: its key and the registry acting as that key."""

    key: ApiKey
    registry: Registry

    @property
    def deployments(self) -> Deployments:
        return Deployments(self.registry)

    @property
    def rollouts(self) -> Rollouts:
        return Rollouts(self.deployments)


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found
