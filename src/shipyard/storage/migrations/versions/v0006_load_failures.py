"""Load failures: the revision a data plane could not apply, why, which plane and when, so
the rollout controller can roll a canary back at once instead of waiting out its windows.

Revision ID: v0006
Revises: v0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "v0006"
down_revision: str | None = "v0005"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "load_failures",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("plane", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("versions", Json, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("deployment", "revision", "plane", name="uq_load_failures_plane"),
    )


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
