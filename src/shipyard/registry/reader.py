"""Read-only registry queries. Reads never take the write lock (see storage.database)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from sqlalchemy import func, or_, select

from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.core.refs import ModelRef, check_alias, check_name, check_version
from shipyard.registry import checks, ledger, queries
from shipyard.registry.models import AliasMove, LedgerEntry, Model, ModelVersion, VersionStatus
from shipyard.storage.blobs import BlobStore
from shipyard.storage.database import Database
from shipyard.storage.tables import AliasMoveRow, LedgerRow, ModelRow, StateRow, VersionRow


class RegistryReader:
    """Lookups over the registry's tables and blobs; `Registry` adds the writes."""

    def __init__(self, database: Database, blobs: BlobStore) -> None:
        self.database = database
        self.blobs = blobs

    def resolve(self, ref: ModelRef | str) -> ModelVersion:
        """`name` → latest READY non-archived version; `name:3`; `name@alias`."""
        if isinstance(ref, str):
            ref = ModelRef.parse(ref)
        if not isinstance(ref, ModelRef):
            raise InvalidArgument(f"expected a model reference, got {type(ref).__name__}")
        with self.database.read() as session:
            model = queries.require_model(session, ref.name)
            row = queries.resolve_row(session, model, ref)
            return queries.to_version(session, model, row)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """The version whatever its status (PENDING, READY or FAILED)."""
        check_name(name)
        check_version(version)
        with self.database.read() as session:
            model = queries.require_model(session, name)
            return queries.to_version(
                session, model, queries.require_version(session, model, version)
            )

    def get_model(self, name: str) -> Model:
        check_name(name)
        with self.database.read() as session:
            return queries.to_model(session, queries.require_model(session, name))

    def list_models(
        self,
        *,
        query: str | None = None,
        tags: Mapping[str, str] | None = None,
        include_archived: bool = False,
    ) -> list[Model]:
        """Models by name; `query` matches name or description (case-insensitive), `tags`
        must all match exactly."""
        checks.check_text(query, "query", 200)
        wanted = checks.check_tags(tags)
        statement = select(ModelRow).order_by(ModelRow.name)
        if not include_archived:
            statement = statement.where(ModelRow.archived.is_(False))
        if query:
            needle = query.lower()
            statement = statement.where(
                or_(
                    func.lower(ModelRow.name).contains(needle, autoescape=True),
                    func.lower(ModelRow.description).contains(needle, autoescape=True),
                )
            )
        with self.database.read() as session:
            rows = [
                row
                for row in session.scalars(statement)
                if all(row.tags.get(k) == v for k, v in wanted.items())
            ]
            return queries.to_models(session, rows)

    def list_versions(
        self, name: str, *, status: VersionStatus | None = None
    ) -> list[ModelVersion]:
        check_name(name)
        with self.database.read() as session:
            model = queries.require_model(session, name)
            statement = (
                select(VersionRow)
                .where(VersionRow.model_id == model.id)
                .order_by(VersionRow.version)
            )
            if status is not None:
                statement = statement.where(VersionRow.status == VersionStatus(status).value)
            return queries.to_versions(session, model, list(session.scalars(statement)))

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Moves of one alias (or all aliases) of `name`, oldest first."""
        check_name(name)
        if alias is not None:
            check_alias(alias)
        with self.database.read() as session:
            model = queries.require_model(session, name)
            statement = (
                select(AliasMoveRow)
                .where(AliasMoveRow.model_id == model.id)
                .order_by(AliasMoveRow.id)
            )
            if alias is not None:
                statement = statement.where(AliasMoveRow.alias == alias)
            return [queries.to_move(name, row) for row in session.scalars(statement)]

    def history(self, name: str) -> list[LedgerEntry]:
        """Every ledger entry about model `name`, oldest first."""
        check_name(name)
        with self.database.read() as session:
            queries.require_model(session, name)
            statement = select(LedgerRow).where(LedgerRow.model == name).order_by(LedgerRow.id)
            return [ledger.to_entry(row) for row in session.scalars(statement)]

    def ledger(
        self,
        *,
        model: str | None = None,
        action: str | None = None,
        deployment: str | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Ledger entries oldest first; with `limit`, the most recent `limit` of them."""
        statement = select(LedgerRow).order_by(LedgerRow.id.desc())
        if model is not None:
            statement = statement.where(LedgerRow.model == check_name(model))
        if deployment is not None:
            statement = statement.where(LedgerRow.deployment == check_name(deployment))
        if action is not None:
            statement = statement.where(LedgerRow.action == checks.check_action(action))
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")
            statement = statement.limit(limit)
        with self.database.read() as session:
            entries = [ledger.to_entry(row) for row in session.scalars(statement)]
        entries.reverse()
        return entries

    def artifact_paths(
        self, version: ModelVersion, names: Collection[str] | None = None
    ) -> dict[str, Path]:
        """Logical artifact name → local path of its blob, checked present and of the right size;
        only `names` (each must exist) when given, so a remote store fetches no more."""
        paths: dict[str, Path] = {}
        chosen = version.artifacts if names is None else {n: version.artifacts[n] for n in names}
        for logical, artifact in chosen.items():
            path = self.blobs.path(artifact.sha256)
            size = path.stat().st_size
            if size != artifact.size:
                raise Unavailable(
                    f"blob of {version.ref} artifact {logical!r} is corrupt "
                    f"({size} bytes, expected {artifact.size})"
                )
            paths[logical] = path
        return paths

    def revision(self) -> int:
        """A counter bumped by every change; poll it to notice changes cheaply."""
        with self.database.read() as session:
            return int(
                session.execute(select(StateRow.revision).where(StateRow.id == 1)).scalar_one()
            )
