"""The registry: models, versions, aliases and the ledger, over a Database and a BlobStore.

Every write validates its arguments before touching anything, runs in one transaction and
appends a ledger row in that same transaction. Registering a version is the one multi-step
write (see registration.py): PENDING is committed first, blobs are stored, and only then is
the version made READY, so a READY version always has every blob durably stored.
"""

from __future__ import annotations

import copy
import dataclasses
import getpass
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.core.refs import check_alias, check_name, check_version
from shipyard.registry import checks, ledger, queries
from shipyard.registry.models import AliasMove, LedgerEntry, Model, ModelVersion, VersionSpec
from shipyard.registry.reader import RegistryReader
from shipyard.registry.recovery import fail_interrupted
from shipyard.registry.registration import Registration
from shipyard.storage.blobs import BlobStore, open_blob_store
from shipyard.storage.database import Database
from shipyard.storage.tables import AliasMoveRow, AliasRow, ModelRow, utcnow


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _check_expected(expected: object) -> None:
    if expected is UNSET or expected is None:
        return
    if not isinstance(expected, int):
        raise InvalidArgument(f"expected must be a version number or None, got {expected!r}")
    check_version(expected)


def _compare(name: str, alias: str, current: int | None, expected: object) -> None:
    """Compare-and-set: refuse the move unless the alias is where the caller thinks it is."""
    if expected is UNSET or expected == current:
        return
    where = f"alias {alias!r} of {name!r}"
    if current is None:
        raise Conflict(f"{where} does not exist, expected it to point at {expected}")
    if expected is None:
        raise Conflict(f"{where} already points at {current}, expected it not to exist")
    raise Conflict(f"{where} points at {current}, expected {expected}")


class Registry(RegistryReader):
    """Models, versions, aliases and the append-only ledger."""

    def __init__(self, database: Database, blobs: BlobStore, *, actor: str | None = None) -> None:
        super().__init__(database, blobs)
        self.actor = checks.check_actor(actor if actor is not None else _default_actor())
        self._registration = Registration(database, blobs, self.actor, socket.gethostname())
        fail_interrupted(database, actor=self.actor, host=self._registration.host)

    def as_actor(self, actor: str) -> Registry:
        """This registry recording changes as `actor`: a shallow copy on the same database and
        blob store (a new Registry would rerun the recovery of interrupted registrations)."""
        clone = copy.copy(self)
        clone.actor = checks.check_actor(actor)
        clone._registration = dataclasses.replace(self._registration, actor=clone.actor)
        return clone

    @classmethod
    def open(
        cls,
        database_url: str,
        blob_location: str | Path,
        *,
        cache_dir: Path | None = None,
        actor: str | None = None,
        timeout_s: float = 30.0,
    ) -> Registry:
        """Open (and migrate) the database and the blob store. A remote blob store needs a
        `cache_dir` for local copies."""
        database = Database(database_url, timeout_s=timeout_s)
        try:
            return cls(database, open_blob_store(blob_location, cache_dir), actor=actor)
        except BaseException:
            database.close()
            raise

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.database.url!r}, {self.blobs!r})"

    def register_version(
        self,
        name: str,
        files: Mapping[str, Path],
        spec: VersionSpec,
        *,
        reason: str | None = None,
    ) -> ModelVersion:
        """Store `files` as the next version of `name` (created if new); READY when returned.
        On any error the version is marked FAILED with the reason and the error re-raised."""
        check_name(name)
        sources = checks.check_files(files)
        values = checks.version_values(spec)
        checks.check_text(reason, "reason")
        number, new_model = self._registration.reserve(name, values)
        try:
            stored = self._registration.store(sources)
            return self._registration.mark_ready(name, number, stored, reason, new_model)
        except BaseException as exc:
            self._registration.mark_failed(name, number, exc)
            raise

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected: int | None | object = UNSET,
        reason: str | None = None,
    ) -> AliasMove:
        """Point `alias` at `version`. `expected` makes it a compare-and-set: None = the alias
        must not exist yet, a number = it must point there now; otherwise Conflict."""
        check_name(name)
        check_alias(alias)
        check_version(version)
        _check_expected(expected)
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            row = queries.require_version(session, model, version)
            queries.require_ready(model, row)
            if row.archived:
                raise FailedPrecondition(f"{name}:{version} is archived; it cannot get an alias")
            current = queries.find_alias(session, model, alias)
            previous = current.version if current is not None else None
            _compare(name, alias, previous, expected)
            if current is None:
                current = AliasRow(
                    model_id=model.id, alias=alias, version=version, updated_at=utcnow()
                )
                session.add(current)
            current.version = version
            current.updated_at = utcnow()
            return self._moved(session, model, alias, version, previous, reason)

    def delete_alias(
        self, name: str, alias: str, *, expected: int | None = None, reason: str | None = None
    ) -> AliasMove:
        """Remove `alias`; with `expected`, only if it points at that version (else Conflict),
        judged under the model's lock so no move can slip in between."""
        check_name(name)
        check_alias(alias)
        if expected is not None:
            _check_expected(expected)
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            current = queries.find_alias(session, model, alias)
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            if expected is not None:
                _compare(name, alias, current.version, expected)
            session.delete(current)
            return self._moved(session, model, alias, None, current.version, reason)

    def _moved(
        self,
        session: Session,
        model: ModelRow,
        alias: str,
        version: int | None,
        previous: int | None,
        reason: str | None,
    ) -> AliasMove:
        move = AliasMoveRow(
            model_id=model.id,
            alias=alias,
            version=version,
            previous=previous,
            at=utcnow(),
            actor=self.actor,
            reason=reason,
        )
        session.add(move)
        ledger.append(
            session,
            actor=self.actor,
            action="alias.set" if version is not None else "alias.deleted",
            model=model.name,
            version=version if version is not None else previous,
            details={"alias": alias, "version": version, "previous": previous},
            reason=reason,
        )
        return queries.to_move(model.name, move)

    def archive_version(
        self, name: str, version: int, *, reason: str | None = None
    ) -> ModelVersion:
        """Hide a version from `resolve(name)`; refused while an alias points at it."""
        check_name(name)
        check_version(version)
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            row = queries.require_version(session, model, version)
            if not row.archived:
                targets = queries.aliases_by_model(session, [model.id])[model.id]
                pointing = sorted(a for a, v in targets.items() if v == version)
                if pointing:
                    raise FailedPrecondition(
                        f"{name}:{version} is the target of alias {', '.join(pointing)}; "
                        "move or delete the alias first"
                    )
                routing = queries.deployments_routing_to(session, name, version)
                if routing:
                    raise FailedPrecondition(
                        f"{name}:{version} is served by deployment {', '.join(routing)}; "
                        "deploy another version first"
                    )
                row.archived = True
                ledger.append(
                    session,
                    actor=self.actor,
                    action="version.archived",
                    model=name,
                    version=version,
                    reason=reason,
                )
            return queries.to_version(session, model, row)

    def set_stage(
        self, name: str, version: int, stage: str | None, *, reason: str | None = None
    ) -> ModelVersion:
        """Move a version between stages: None (released: `latest` may pick it), "candidate"
        or "rejected" (kept for the record, never picked by `latest`)."""
        check_name(name)
        check_version(version)
        checks.check_stage(stage)
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            row = queries.require_version(session, model, version)
            if row.stage != stage:
                previous, row.stage = row.stage, stage
                ledger.append(
                    session,
                    actor=self.actor,
                    action=f"version.{stage or 'released'}",
                    model=name,
                    version=version,
                    details={"stage": stage, "previous": previous},
                    reason=reason,
                )
            return queries.to_version(session, model, row)

    def archive_model(self, name: str, *, reason: str | None = None) -> Model:
        """Hide a model from `list_models` and close it to new versions; aliases keep working."""
        check_name(name)
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            if not model.archived:
                model.archived = True
                ledger.append(
                    session, actor=self.actor, action="model.archived", model=name, reason=reason
                )
            return queries.to_model(session, model)

    def update_model(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Model:
        """Set the description and/or replace the tags; None leaves a field unchanged."""
        check_name(name)
        checks.check_text(description, "description")
        changes: dict[str, Any] = {}
        if description is not None:
            changes["description"] = description
        if tags is not None:
            changes["tags"] = checks.check_tags(tags)
        with self.database.write() as session:
            model = queries.require_model(session, name, lock=True)
            if changes:
                for key, value in changes.items():
                    setattr(model, key, value)
                ledger.append(
                    session, actor=self.actor, action="model.updated", model=name, details=changes
                )
            return queries.to_model(session, model)

    def record(
        self,
        action: str,
        *,
        model: str | None = None,
        version: int | None = None,
        details: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> LedgerEntry:
        """Append a ledger entry for a change made by another layer (deployments, keys...)."""
        checks.check_action(action)
        if model is not None:
            check_name(model)
        if version is not None:
            check_version(version)
            if model is None:
                raise InvalidArgument("a ledger entry with a version needs a model")
        payload = checks.check_json(dict(details or {}), "details")
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            if model is not None:
                found = queries.require_model(session, model, lock=True)
                if version is not None:
                    queries.require_version(session, found, version)
            return ledger.append(
                session,
                actor=self.actor,
                action=action,
                model=model,
                version=version,
                details=payload,
                reason=reason,
            )
