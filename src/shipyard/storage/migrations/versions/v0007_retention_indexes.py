"""Indexes on `at` alone for the tables retention prunes by age (prediction_events,
route_stats, predictions): their other indexes lead with the model or deployment, so an hourly
`DELETE ... WHERE at < cutoff` would scan the whole table.

Revision ID: v0007
Revises: v0006
"""

from __future__ import annotations

from alembic import op

revision = "v0007"
down_revision: str | None = "v0006"
branch_labels: str | None = None
depends_on: str | None = None

INDEXES = {
    "ix_prediction_events_at": "prediction_events",
    "ix_route_stats_at": "route_stats",
    "ix_predictions_at": "predictions",
}


def upgrade() -> None:
    for name, table in INDEXES.items():
        op.create_index(name, table, ["at"])


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
