"""Monitoring: the prediction-event table sink and the alert history.

Revision ID: v0004
Revises: v0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "v0004"
down_revision: str | None = "v0003"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "prediction_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(200)),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(64)),
        sa.Column("inputs", Json, nullable=False),
        sa.Column("outputs", Json, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
    )
    op.create_index("ix_prediction_events_model", "prediction_events", ["model", "at"])
    op.create_index("ix_prediction_events_deployment", "prediction_events", ["deployment", "at"])
    op.create_index("ix_prediction_events_subject", "prediction_events", ["subject"])
    op.create_index("ix_prediction_events_request", "prediction_events", ["request_id"])
    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", Json, nullable=False),
    )
    op.create_index("ix_alerts_subject", "alerts", ["subject", "at"])


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
