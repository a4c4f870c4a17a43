"""Table of data-plane load failures (migration v0006): a revision one data plane could not
apply because a version it needs did not load. The meaning of the columns lives in
shipyard.rollouts.load_reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.storage.tables import Base, BigId, Json, UTCDateTime


class LoadFailureRow(Base):
    __tablename__ = "load_failures"
    __table_args__ = (
        # Upserted: a plane retrying the same revision rewrites its row, never adds one.
        UniqueConstraint("deployment", "revision", "plane", name="uq_load_failures_plane"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)
    plane: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    versions: Mapped[dict[str, str]] = mapped_column(Json)  # ref ("fraud:2") -> why it failed
    at: Mapped[datetime] = mapped_column(UTCDateTime())
