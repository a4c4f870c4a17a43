"""Tables of monitoring (migration v0004): the PostgreSQL/SQLite prediction-event sink and the
alert history. The meaning of the columns lives in shipyard.monitoring."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.storage.tables import Base, BigId, Json, UTCDateTime


class PredictionEventRow(Base):
    __tablename__ = "prediction_events"
    __table_args__ = (
        Index("ix_prediction_events_model", "model", "at"),
        Index("ix_prediction_events_deployment", "deployment", "at"),
        Index("ix_prediction_events_subject", "subject"),
        Index("ix_prediction_events_request", "request_id"),
        Index("ix_prediction_events_at", "at"),  # retention prunes by age
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    request_id: Mapped[str] = mapped_column(String(128))
    deployment: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A digest of the business key (e.g. a customer id), for erasure requests; never the key.
    subject: Mapped[str | None] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(Json)
    outputs: Mapped[dict[str, Any]] = mapped_column(Json)
    latency_ms: Mapped[float] = mapped_column(Float)


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_subject", "subject", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    rule: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))  # model or deployment name
    state: Mapped[str] = mapped_column(String(16))  # firing | resolved
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
