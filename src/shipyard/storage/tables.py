"""The registry's tables as a typed SQLAlchemy 2 ORM. The schema itself is created by the
Alembic migrations in `migrations/versions`; a test checks the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly "INTEGER PRIMARY KEY".
BigId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; use datetime.now(UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Version numbers come from this counter (UPDATE ... RETURNING), never from MAX(version).
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    flavor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    creator: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(Json)
    params: Mapped[dict[str, Any]] = mapped_column(Json)
    metrics: Mapped[dict[str, float]] = mapped_column(Json)
    signature: Mapped[dict[str, Any] | None] = mapped_column(Json)
    lineage: Mapped[dict[str, Any]] = mapped_column(Json)
    flavor_meta: Mapped[dict[str, Any]] = mapped_column(Json)
    compiled: Mapped[dict[str, Any] | None] = mapped_column(Json)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    stage: Mapped[str | None] = mapped_column(String(16))  # added by migration v0005
    # Who is uploading a PENDING version, so an interrupted registration can be detected.
    owner_host: Mapped[str] = mapped_column(String(255))
    owner_pid: Mapped[int] = mapped_column(Integer)


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("model_versions.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class AliasRow(Base):
    __tablename__ = "aliases"

    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AliasMoveRow(Base):
    __tablename__ = "alias_moves"
    __table_args__ = (Index("ix_alias_moves_model_alias", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id"))
    alias: Mapped[str] = mapped_column(String(200))
    version: Mapped[int | None] = mapped_column(Integer)
    previous: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class LedgerRow(Base):
    """Append-only: database triggers refuse UPDATE and DELETE (see the first migration)."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_model", "model", "id"),
        Index("ix_ledger_action", "action", "id"),
        Index("ix_ledger_deployment", "deployment", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    # A name, not a foreign key: the ledger outlives and never cascades with what it describes.
    model: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int | None] = mapped_column(Integer)
    deployment: Mapped[str | None] = mapped_column(String(200))  # added by migration v0003
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    reason: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(BigInteger)


class StateRow(Base):
    """One row holding the change counter data planes poll (bumped in every write)."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)


# Tables that live in their own modules register on Base here, so Base.metadata is the schema.
from shipyard.storage import deployments_table as deployments_table  # noqa: E402
from shipyard.storage import keys_table as keys_table  # noqa: E402
from shipyard.storage import load_failures_table as load_failures_table  # noqa: E402
from shipyard.storage import monitoring_table as monitoring_table  # noqa: E402
from shipyard.storage import retrain_table as retrain_table  # noqa: E402
