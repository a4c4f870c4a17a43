"""Tables of the control plane (migration v0003): deployments and their revisions, rollouts,
per-variant traffic statistics, logged predictions with their feedback, and the audit log.
The meaning of the columns lives in shipyard.rollouts and shipyard.auth.audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.storage.tables import Base, BigId, Json, UTCDateTime


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    # The revision data planes route by, and the counter new revision numbers come from.
    revision: Mapped[int] = mapped_column(Integer)
    last_revision: Mapped[int] = mapped_column(Integer)


class RevisionRow(Base):
    __tablename__ = "deployment_revisions"
    __table_args__ = (UniqueConstraint("deployment_id", "number", name="uq_revisions_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("deployments.id"))
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class RolloutRow(Base):
    __tablename__ = "rollouts"
    __table_args__ = (
        # At most one active rollout per deployment, enforced by the database itself.
        Index(
            "uq_rollouts_active",
            "deployment_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("deployments.id"))
    active: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    policy: Mapped[dict[str, Any]] = mapped_column(Json)
    baseline: Mapped[dict[str, Any]] = mapped_column(Json)
    candidate: Mapped[dict[str, Any]] = mapped_column(Json)
    step: Mapped[int] = mapped_column(Integer)
    windows: Mapped[int] = mapped_column(Integer)  # analysis windows spent on this step
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    decisions: Mapped[list[dict[str, Any]]] = mapped_column(Json)


class RouteStatsRow(Base):
    """What one data plane saw for one variant since its previous flush (summed by readers)."""

    __tablename__ = "route_stats"
    __table_args__ = (
        Index("ix_route_stats_window", "deployment", "at"),
        Index("ix_route_stats_at", "at"),  # retention prunes by age
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    plane: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    latency: Mapped[list[int]] = mapped_column(Json)  # counts per shipyard.rollouts.stats bucket
    predictions: Mapped[list[float]] = mapped_column(Json)  # a bounded sample
    shadow_total: Mapped[int] = mapped_column(Integer)
    shadow_agree: Mapped[int] = mapped_column(Integer)


class PredictionRow(Base):
    """A routed prediction, kept so feedback (ground truth) can be joined to it later."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_window", "deployment", "at"),
        Index("ix_predictions_at", "at"),  # retention prunes by age
        Index("ix_predictions_key", "key"),  # feedback by business key (v0008)
    )

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    output: Mapped[Any] = mapped_column(Json)
    # The keyed digest of the request's business key (SHIPYARD_SERVE_FEEDBACK_KEY), if any.
    key: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)


class FeedbackRow(Base):
    __tablename__ = "feedback"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(Json)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))


class AuditRow(Base):
    """Who did what from where: every authentication failure and state-changing call."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))  # key id and name, or "anonymous"
    action: Mapped[str] = mapped_column(String(200))  # e.g. "POST /api/v1/deployments"
    target: Mapped[str | None] = mapped_column(String(500))
    remote: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
