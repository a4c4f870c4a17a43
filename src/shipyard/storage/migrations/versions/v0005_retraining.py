"""Retraining: pipelines and their runs (one active run per pipeline), and the stage of a
version (a retrained candidate stays out of `latest` until it is released).

Revision ID: v0005
Revises: v0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "v0005"
down_revision: str | None = "v0004"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("entry", sa.String(500), nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", _at(), nullable=False),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("pipeline_id", sa.BigInteger(), sa.ForeignKey("pipelines.id"), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(100), nullable=False),
        sa.Column("trigger_details", Json, nullable=False),
        sa.Column("started_at", _at(), nullable=False),
        sa.Column("ended_at", _at()),
        sa.Column("owner_host", sa.String(255), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=False),
        sa.Column("result", Json, nullable=False),
        sa.Column("candidate_version", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("log_path", sa.String(1000)),
    )
    op.create_index(
        "uq_pipeline_runs_active",
        "pipeline_runs",
        ["pipeline_id"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline_id", "id"])
    op.add_column("model_versions", sa.Column("stage", sa.String(16)))


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
