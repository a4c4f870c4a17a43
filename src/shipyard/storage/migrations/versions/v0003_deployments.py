"""Control plane: deployments, revisions, rollouts, route statistics, predictions, feedback,
the audit log, and the ledger's deployment column.

Revision ID: v0003
Revises: v0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "v0003"
down_revision: str | None = "v0002"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _deployments() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("last_revision", sa.Integer(), nullable=False),
    )
    op.create_table(
        "deployment_revisions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "deployment_id", sa.BigInteger(), sa.ForeignKey("deployments.id"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.UniqueConstraint("deployment_id", "number", name="uq_revisions_number"),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "deployment_id", sa.BigInteger(), sa.ForeignKey("deployments.id"), nullable=False
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("policy", Json, nullable=False),
        sa.Column("baseline", Json, nullable=False),
        sa.Column("candidate", Json, nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("window_started_at", _at(), nullable=False),
        sa.Column("started_at", _at(), nullable=False),
        sa.Column("updated_at", _at(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("decisions", Json, nullable=False),
    )
    op.create_index(
        "uq_rollouts_active",
        "rollouts",
        ["deployment_id"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def _observations() -> None:
    op.create_table(
        "route_stats",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("plane", sa.String(64), nullable=False),
        sa.Column("at", _at(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency", Json, nullable=False),
        sa.Column("predictions", Json, nullable=False),
        sa.Column("shadow_total", sa.Integer(), nullable=False),
        sa.Column("shadow_agree", sa.Integer(), nullable=False),
    )
    op.create_index("ix_route_stats_window", "route_stats", ["deployment", "at"])
    op.create_table(
        "predictions",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", _at(), nullable=False),
        sa.Column("output", Json, nullable=False),
    )
    op.create_index("ix_predictions_window", "predictions", ["deployment", "at"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("value", Json, nullable=False),
        sa.Column("at", _at(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )


def upgrade() -> None:
    _deployments()
    _observations()
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("at", _at(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("target", sa.String(500)),
        sa.Column("remote", sa.String(100)),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("details", Json, nullable=False),
    )
    op.create_index("ix_audit_at", "audit_log", ["at"])
    op.add_column("ledger", sa.Column("deployment", sa.String(200)))
    op.create_index("ix_ledger_deployment", "ledger", ["deployment", "id"])


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
