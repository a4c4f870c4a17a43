"""API keys: only a digest of each secret is stored (see shipyard.auth.keys).

Revision ID: v0002
Revises: v0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "v0002"
down_revision: str | None = "v0001"
branch_labels: str | None = None
depends_on: str | None = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _at() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", Json, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("last_used_at", _at()),
        sa.Column("expires_at", _at()),
        sa.Column("revoked_at", _at()),
    )


def downgrade() -> None:
    raise RuntimeError("the shipyard schema cannot be downgraded (the ledger is append-only)")
