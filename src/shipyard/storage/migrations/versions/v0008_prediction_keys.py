"""Feedback by business key: each logged prediction keeps the keyed digest of its
deployment's key input (an order or transaction id), indexed, so ground truth that names the
key instead of the request id finds its prediction.

Revision ID: v0008
Revises: v0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0008"
down_revision: str | None = "v0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("key", sa.String(64), nullable=True))
    op.create_index("ix_predictions_key", "predictions", ["key"])


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
