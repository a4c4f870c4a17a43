"""What starts a run: a cron schedule, an alert on the model, a volume of new labels, or a
person (`shipyard retrain`). Deciding is cheap and side-effect free; starting goes through
`Pipelines.start_run`, whose one-active-run rule and cool-down turn a storm into one run.

An alert refused only because its pipeline is cooling down is kept, one per pipeline, and
offered again on every tick until it starts a run (any run of that pipeline answers it): an
alert fires once per incident, so dropping it would leave a drifted model unretrained for good.
Kept in memory: a restart of the control plane forgets what was waiting.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from croniter import croniter
from sqlalchemy import func, select

from shipyard.core.errors import FailedPrecondition
from shipyard.jobs.retrain.pipelines import Pipeline, Pipelines, Run
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Due:
    pipeline: str
    trigger: str  # schedule | labels | alert.<rule>
    details: dict[str, object]


def schedule_due(pipeline: Pipeline, last_start: datetime | None, now: datetime) -> bool:
    """True when a cron tick fell between the last run's start (or registration) and now."""
    if pipeline.config.schedule is None:
        return False
    since = last_start or pipeline.created_at
    following: datetime = croniter(pipeline.config.schedule, since).get_next(datetime)
    return following <= now


def rule_key(rule: str) -> str:
    """A rule's name as a trigger word: `realised accuracy` -> `realised_accuracy`."""
    return re.sub(r"[^a-z0-9_.-]+", "_", rule.strip().lower())


def alert_matches(pipeline: Pipeline, subject: str, rule: str, model: str | None = None) -> bool:
    """Whether an alert of `rule` on `subject` (a model, or a deployment of `model`) starts
    `pipeline`; its `on_alerts` may name the rule as shown (`realised accuracy`) or as a
    trigger word (`realised_accuracy`)."""
    wanted = {rule_key(w) for w in pipeline.config.on_alerts}
    about = pipeline.model in (subject, model)
    return about and ("*" in wanted or rule_key(rule) in wanted)


class Triggers:
    """Finds due pipelines and starts their runs through `start` (the app runs them)."""

    def __init__(self, pipelines: Pipelines, start: Callable[[Due], Run | None]) -> None:
        self.pipelines = pipelines
        self.start = start
        self.deferred: dict[str, Due] = {}  # pipeline -> an alert refused in its cool-down

    def due(self, now: datetime) -> list[Due]:
        """Pipelines whose schedule or label volume says run, then the deferred alerts."""
        found = []
        for pipeline in self.pipelines.list():
            if not (pipeline.config.schedule or pipeline.config.new_labels):
                continue
            runs = self.pipelines.runs(pipeline.name, limit=1)
            last = runs[0].started_at if runs else None
            if schedule_due(pipeline, last, now):
                found.append(Due(pipeline.name, "schedule", {"cron": pipeline.config.schedule}))
                continue
            wanted = pipeline.config.new_labels
            if wanted is not None:
                count = self.new_labels(pipeline.model, last or pipeline.created_at)
                if count >= wanted:
                    found.append(Due(pipeline.name, "labels", {"new_labels": count}))
        due_now = {f.pipeline for f in found}
        found.extend(d for d in self.deferred.values() if d.pipeline not in due_now)
        return found

    def new_labels(self, model: str, since: datetime) -> int:
        """Feedback that arrived since `since` for predictions of `model`."""
        statement = (
            select(func.count())
            .select_from(FeedbackRow)
            .join(PredictionRow, PredictionRow.request_id == FeedbackRow.request_id)
            .where(PredictionRow.model == model, FeedbackRow.at > since)
        )
        with self.pipelines.database.read() as session:
            return int(session.execute(statement).scalar_one())

    def on_alert(self, subject: str, rule: str, details: dict[str, object]) -> list[Due]:
        """The pipelines an alert on `subject` starts (each at most once at a time)."""
        model = details.get("model")  # set when the subject is a deployment of it
        return [
            Due(p.name, f"alert.{rule_key(rule)}", {"subject": subject, "rule": rule, **details})
            for p in self.pipelines.list()
            if alert_matches(p, subject, rule, model if isinstance(model, str) else None)
        ]

    def fire(self, due: Iterable[Due]) -> list[Run]:
        started = []
        for item in due:
            try:
                run = self.start(item)
            except FailedPrecondition as exc:  # cooling down: alerts wait, the rest come back
                self._refused(item, exc, defer=item.trigger.startswith("alert."))
                continue
            except Exception as exc:  # busy (the running run answers it), or gone
                self._refused(item, exc, defer=False)
                continue
            self.deferred.pop(item.pipeline, None)  # started, or a queued run answers it
            if run is not None:
                started.append(run)
        return started

    def _refused(self, item: Due, exc: Exception, *, defer: bool) -> None:
        again = self.deferred.get(item.pipeline) == item
        if defer:
            self.deferred[item.pipeline] = item
        elif again:
            self.deferred.pop(item.pipeline)  # e.g. the pipeline was deleted
        level = logging.DEBUG if again else logging.INFO
        waits = "; it will start when the cool-down ends" if defer and not again else ""
        log.log(level, "not starting %s (%s): %s%s", item.pipeline, item.trigger, exc, waits)
