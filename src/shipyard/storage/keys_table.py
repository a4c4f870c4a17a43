"""The `api_keys` table (migration v0002). Rows hold a digest of each key, never the secret;
the meaning of the columns lives in shipyard.auth.keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.storage.tables import Base, Json, UTCDateTime


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    # The public part of a token (`sy_<id>_<secret>`): safe to show, log and put in the ledger.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 hex of the whole token; unique so two keys can never share a secret.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
