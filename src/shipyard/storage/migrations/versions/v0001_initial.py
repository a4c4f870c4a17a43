"""Initial schema: models, versions, artifacts, aliases, alias history, ledger, state.

Revision ID: v0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "v0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _tables() -> None:
    op.create_table(
        "models",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("tags", Json, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("model_id", sa.BigInteger(), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text()),
        sa.Column("flavor", sa.String(100), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("tags", Json, nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("metrics", Json, nullable=False),
        sa.Column("signature", Json),
        sa.Column("lineage", Json, nullable=False),
        sa.Column("flavor_meta", Json, nullable=False),
        sa.Column("compiled", Json),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("owner_host", sa.String(255), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_number"),
    )
    op.create_table(
        "artifacts",
        sa.Column(
            "version_id", sa.BigInteger(), sa.ForeignKey("model_versions.id"), primary_key=True
        ),
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.BigInteger(), sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("alias", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _at(), nullable=False),
    )
    op.create_table(
        "alias_moves",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("model_id", sa.BigInteger(), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer()),
        sa.Column("previous", sa.Integer()),
        sa.Column("at", _at(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("ix_alias_moves_model_alias", "alias_moves", ["model_id", "alias", "id"])
    op.create_table(
        "ledger",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("at", _at(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("version", sa.Integer()),
        sa.Column("details", Json, nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_ledger_model", "ledger", ["model", "id"])
    op.create_index("ix_ledger_action", "ledger", ["action", "id"])
    state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(state, [{"id": 1, "revision": 0}])


_SQLITE_APPEND_ONLY = """
CREATE TRIGGER ledger_no_{verb} BEFORE {verb} ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {verb} is not allowed'); END
"""

_POSTGRES_APPEND_ONLY = [
    """
    CREATE FUNCTION shipyard_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP;
    END
    $$
    """,
    """
    CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION shipyard_ledger_append_only()
    """,
    """
    CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION shipyard_ledger_append_only()
    """,
]


def _append_only_ledger() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(_SQLITE_APPEND_ONLY.format(verb=verb))
    elif dialect == "postgresql":
        for statement in _POSTGRES_APPEND_ONLY:
            op.execute(statement)
    else:
        raise RuntimeError(f"no append-only ledger triggers for the {dialect} dialect")


def upgrade() -> None:
    _tables()
    _append_only_ledger()


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
