"""The Python client: one object for everything a user does with the registry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from shipyard.app.settings import Settings
from shipyard.core.lineage import Lineage
from shipyard.core.refs import ModelRef
from shipyard.monitoring.serialization import reference_profile
from shipyard.packaging.load import LoadedModel, load_version
from shipyard.packaging.register import Registration, load_reference, register_model
from shipyard.registry import service
from shipyard.registry.models import AliasMove, LedgerEntry, Model, ModelVersion, VersionStatus
from shipyard.runtimes.flavors import flavor_for_file, get_flavor


class Registry:
    """Models, versions and aliases in one registry (SQLite in SHIPYARD_HOME by default).

    `url` is a database URL (`sqlite:///path.db`, `postgresql://...`); artifacts go to
    SHIPYARD_BLOB_URL or SHIPYARD_HOME/blobs.
    """

    def __init__(self, url: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._store = service.Registry.open(
            url or self.settings.resolved_database_url,
            self.settings.resolved_blob_location,
            cache_dir=self.settings.cache_dir,
            actor=self.settings.actor,
            timeout_s=self.settings.database_timeout_s,
        )

    @property
    def store(self) -> service.Registry:
        """The registry service underneath, for integrations (serving, jobs)."""
        return self._store

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def register(
        self,
        model: object,
        name: str,
        *,
        sample_input: object = None,
        reference_data: object = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Lineage | Mapping[str, Any] | None = None,
        trust: bool = False,
        flavor: str | None = None,
        compile: bool = True,
    ) -> ModelVersion:
        """Register `model` as the next version of `name` and return it (status READY)."""
        request = Registration(
            name, sample_input, reference_data, tags, description, params, metrics, lineage,
            trust, flavor, compile, profiler=reference_profile,
        )  # fmt: skip
        return register_model(self._store, model, request)

    def register_file(
        self,
        path: str | Path,
        name: str,
        *,
        flavor: str = "auto",
        trust: bool = False,
        **options: Any,
    ) -> ModelVersion:
        """Register a model file (.skops, .onnx, .ubj/.json, .txt, .pt, or .pkl with trust)."""
        file = Path(path)
        chosen = flavor_for_file(file) if flavor == "auto" else get_flavor(flavor)
        model = chosen.read(file, trust=trust)
        # A trusted pickle can hold any framework's object: let the object pick its flavor.
        detected = None if flavor == "auto" else chosen.name
        return self.register(model, name, flavor=detected, trust=trust, **options)

    def load(self, ref: ModelRef | str, *, compiled: bool = True) -> LoadedModel:
        """Load a version for prediction; `compiled=False` skips the ONNX fast path."""
        return load_version(self._store, ref, prefer_compiled=compiled)

    def get(self, ref: ModelRef | str) -> ModelVersion:
        return self._store.resolve(ref)

    def reference_data(self, ref: ModelRef | str) -> pd.DataFrame | None:
        """The reference table given at registration (what drift is judged against)."""
        return load_reference(self._store, self._store.resolve(ref))

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self._store.get_version(name, version)

    def get_model(self, name: str) -> Model:
        return self._store.get_model(name)

    def list_models(
        self, *, query: str | None = None, tags: Mapping[str, str] | None = None
    ) -> list[Model]:
        return self._store.list_models(query=query, tags=tags)

    def list_versions(
        self, name: str, *, status: VersionStatus | None = None
    ) -> list[ModelVersion]:
        return self._store.list_versions(name, status=status)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected: int | None | object = service.UNSET,
        reason: str | None = None,
    ) -> AliasMove:
        """Point `alias` at `version`; with `expected`, only if it still points there."""
        return self._store.set_alias(name, alias, version, expected=expected, reason=reason)

    def delete_alias(
        self, name: str, alias: str, *, expected: int | None = None, reason: str | None = None
    ) -> AliasMove:
        """Remove `alias`; with `expected`, only if it still points at that version."""
        return self._store.delete_alias(name, alias, expected=expected, reason=reason)

    def archive(self, name: str, version: int | None = None, *, reason: str | None = None) -> None:
        """Archive one version, or the whole model when no version is given."""
        if version is None:
            self._store.archive_model(name, reason=reason)
        else:
            self._store.archive_version(name, version, reason=reason)

    def history(self, name: str) -> list[LedgerEntry]:
        """Every recorded change to `name`, oldest first."""
        return self._store.history(name)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        return self._store.alias_history(name, alias)
