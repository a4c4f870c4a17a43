"""Tables of retraining (migration v0005): pipelines and their runs. The meaning of the
columns lives in shipyard.jobs.retrain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.storage.tables import Base, BigId, Json, UTCDateTime


class PipelineRow(Base):
    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model: Mapped[str] = mapped_column(String(200))
    entry: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        # One run at a time per pipeline: a trigger storm starts one run, not a hundred.
        Index(
            "uq_pipeline_runs_active",
            "pipeline_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index("ix_pipeline_runs_pipeline", "pipeline_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pipelines.id"))
    active: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(100))
    trigger_details: Mapped[dict[str, Any]] = mapped_column(Json)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    owner_host: Mapped[str] = mapped_column(String(255))
    owner_pid: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(Json)  # data, params, packages, metrics, gate
    candidate_version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(String(1000))
