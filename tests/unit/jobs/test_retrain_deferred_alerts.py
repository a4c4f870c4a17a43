"""An alert refused because its pipeline is cooling down waits and starts a run once the
cool-down ends; other refusals (a run in progress) do not wait."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shipyard.core.errors import Conflict, FailedPrecondition
from shipyard.jobs.retrain.pipelines import Pipelines, Run
from shipyard.jobs.retrain.triggers import Due, Triggers

NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)
DRIFT = Due("p", "alert.drift", {"subject": "fraud"})


class NoPipelines:
    """Nothing scheduled: `due` can only return what was deferred."""

    def list(self) -> list[Any]:
        return []


class Starter:
    def __init__(self, *outcomes: Exception | str) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Due] = []

    def __call__(self, due: Due) -> Run | None:
        self.calls.append(due)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return cast(Run, outcome)


def _triggers(start: Starter) -> Triggers:
    return Triggers(cast(Pipelines, NoPipelines()), start)


def test_an_alert_in_the_cool_down_starts_a_run_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cooling = FailedPrecondition("pipeline 'p' is cooling down until 07:00")
    start = Starter(cooling, cooling, "run 2")
    triggers = _triggers(start)
    with caplog.at_level(logging.DEBUG, logger="shipyard.jobs.retrain.triggers"):
        assert triggers.fire([DRIFT]) == []
        assert triggers.due(NOW) == [DRIFT]  # offered again on the next tick
        assert triggers.fire(triggers.due(NOW)) == []  # still cooling down
        assert [str(r) for r in triggers.fire(triggers.due(NOW))] == ["run 2"]
    assert start.calls == [DRIFT, DRIFT, DRIFT]
    assert triggers.due(NOW) == [] and triggers.deferred == {}
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert said[0][0] == logging.INFO and said[0][1].endswith("when the cool-down ends")
    assert said[1][0] == logging.DEBUG  # said once, not on every tick


def test_a_busy_pipeline_does_not_keep_the_alert() -> None:
    start = Starter(Conflict("run 7 of pipeline 'p' is still running"))
    triggers = _triggers(start)
    assert triggers.fire([DRIFT]) == [] and triggers.deferred == {}


def test_a_waiting_alert_is_answered_by_any_run_of_its_pipeline() -> None:
    cooling = FailedPrecondition("cooling down")
    start = Starter(cooling, "scheduled run")
    triggers = _triggers(start)
    triggers.fire([DRIFT])
    scheduled = Due("p", "schedule", {"cron": "0 3 * * *"})
    assert [str(r) for r in triggers.fire([scheduled])] == ["scheduled run"]
    assert triggers.deferred == {}


def test_schedules_refused_in_the_cool_down_are_not_kept() -> None:
    start = Starter(FailedPrecondition("cooling down"))
    triggers = _triggers(start)
    triggers.fire([Due("p", "schedule", {})])
    assert triggers.deferred == {}
