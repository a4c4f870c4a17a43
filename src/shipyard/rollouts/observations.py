"""Observations: what the data planes recorded for one deployment revision over a window.

Data planes flush one `route_stats` row per variant every second or so (rollouts.recorder);
a window is every row of the revision flushed at or after its start, summed per variant. A
flush carries up to one flush interval of traffic from just before it, so a window may begin
with a second of the previous one's requests: harmless for analysis, which compares variants
of the same revision over the same rows.

Feedback is joined to the logged predictions of the window (or of the whole revision, for
labels that arrive late). The rule for "correct": the
prediction's output (the first output's first row) and the feedback value are compared after
unwrapping one-element lists (`[1]` is `1`); numbers compare by value (`1 == 1.0 == true`),
anything else by JSON equality, so a multi-value output (a row of probabilities) is correct
only when the feedback is that same list. Give class labels as feedback for classifiers.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shipyard.rollouts.spec import Role, Variant
from shipyard.rollouts.stats import VariantWindow, latency_counts
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow, RouteStatsRow

VersionKey = tuple[str, int]  # (model, version)
FEEDBACK_BATCH = 5000  # joined rows fetched per round trip


@dataclass(slots=True)
class Observed:
    """Per-variant windows of one revision: live variants and shadows apart (the same
    version can be a shadow in one revision and live in another)."""

    revision: int
    since: datetime | None
    live: dict[VersionKey, VariantWindow] = field(default_factory=dict)
    shadows: dict[VersionKey, VariantWindow] = field(default_factory=dict)

    def of(self, variant: Variant) -> VariantWindow:
        """The live window of `variant` (empty when it had no traffic)."""
        return self.live.get((variant.model, variant.version)) or VariantWindow()

    def shadow_of(self, variant: Variant) -> VariantWindow:
        return self.shadows.get((variant.model, variant.version)) or VariantWindow()


def observe(
    database: Database,
    deployment: str,
    revision: int,
    *,
    since: datetime | None = None,
    labels: Literal["window", "revision"] = "window",
) -> Observed:
    """Sum the statistics of `revision` of `deployment` flushed at or after `since` and join
    the feedback given for its predictions logged since then (`labels="window"`) or during the
    whole revision (`labels="revision"`). Ground truth often arrives long after the
    prediction, so a rollout's analysis takes every label of its step's revision: both
    variants share that revision, so the comparison stays fair."""
    observed = Observed(revision, since)
    stats = select(RouteStatsRow).where(
        RouteStatsRow.deployment == deployment, RouteStatsRow.revision == revision
    )
    if since is not None:
        stats = stats.where(RouteStatsRow.at >= since)
    with database.read() as session:
        for row in session.scalars(stats):
            windows = observed.shadows if row.role == Role.SHADOW.value else observed.live
            window = windows.setdefault((row.model, row.version), VariantWindow())
            window.add(_window(row))
        _join_feedback(session, observed, deployment, since if labels == "window" else None)
    return observed


def _window(row: RouteStatsRow) -> VariantWindow:
    return VariantWindow(
        requests=row.requests,
        errors=row.errors,
        latency=latency_counts(row.latency),
        predictions=[float(v) for v in row.predictions],
        shadow_total=row.shadow_total,
        shadow_agree=row.shadow_agree,
    )


def _join_feedback(
    session: Session, observed: Observed, deployment: str, since: datetime | None
) -> None:
    joined = (
        select(PredictionRow.model, PredictionRow.version, PredictionRow.output, FeedbackRow.value)
        .join(FeedbackRow, FeedbackRow.request_id == PredictionRow.request_id)
        .where(PredictionRow.deployment == deployment, PredictionRow.revision == observed.revision)
    )
    if since is not None:
        joined = joined.where(PredictionRow.at >= since)
    result = session.execute(joined.execution_options(yield_per=FEEDBACK_BATCH))
    for model, version, output, value in result:
        window = observed.live.setdefault((model, version), VariantWindow())
        window.feedback_total += 1
        window.feedback_correct += int(correct(output, value))


def correct(output: Any, value: Any) -> bool:
    """Whether a logged prediction matches its ground truth (the rule in the module doc)."""
    output, value = _unwrap(output), _unwrap(value)
    if isinstance(output, numbers.Real) and isinstance(value, numbers.Real):
        return float(output) == float(value)
    return bool(output == value)


def _unwrap(value: Any) -> Any:
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def prune(database: Database, older_than: datetime) -> dict[str, int]:
    """Delete statistics and predictions recorded before `older_than`, and feedback older
    than that whose prediction is gone. Returns the rows deleted per table."""
    with database.write() as session:
        stats = session.execute(delete(RouteStatsRow).where(RouteStatsRow.at < older_than))
        predictions, feedback = _prune_predictions(session, older_than)
        return {"route_stats": _count(stats), "predictions": predictions, "feedback": feedback}


def _prune_predictions(session: Session, older_than: datetime) -> tuple[int, int]:
    predictions = session.execute(delete(PredictionRow).where(PredictionRow.at < older_than))
    orphaned = delete(FeedbackRow).where(
        FeedbackRow.at < older_than,
        FeedbackRow.request_id.not_in(select(PredictionRow.request_id)),
    )
    return _count(predictions), _count(session.execute(orphaned))


class ObservedPredictions:
    """The predictions data planes recorded for deployments (with the business key's digest,
    when one is configured) and the feedback given for them, as one store of the prediction
    log's retention: `shipyard logs prune` and `shipyard logs erase --key` reach them too."""

    name = "predictions"

    def __init__(self, database: Database) -> None:
        self.database = database

    def prune(self, before: datetime) -> int:
        """Predictions and feedback rows older than `before` (feedback once its prediction is
        gone)."""
        with self.database.write() as session:
            return sum(_prune_predictions(session, before))

    def erase(self, subjects: Collection[str]) -> int:
        """Rows of the predictions carrying one of the key digests `subjects`, and their
        feedback."""
        carrying = PredictionRow.key.in_(subjects)
        keyed = select(PredictionRow.request_id).where(carrying)
        with self.database.write() as session:
            feedback = session.execute(delete(FeedbackRow).where(FeedbackRow.request_id.in_(keyed)))
            predictions = session.execute(delete(PredictionRow).where(carrying))
            return _count(feedback) + _count(predictions)


def _count(result: Any) -> int:
    return int(result.rowcount)
