"""Wiring retraining to deployments: which version is the champion, and how a candidate
that passed the gate is released (a canary rollout with the deployment's policy, or an
alias move). Jobs and rollouts are siblings, so the app joins them here."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from shipyard.app.settings import Settings
from shipyard.app.ticker import Ticker
from shipyard.core.errors import Conflict, NotFound
from shipyard.jobs.retrain.gate import GateResult
from shipyard.jobs.retrain.pipelines import Pipeline, Pipelines, Run
from shipyard.jobs.retrain.runner import Runner, StoreSpec
from shipyard.jobs.retrain.triggers import Due, Triggers
from shipyard.registry.models import ModelVersion
from shipyard.registry.service import Registry
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.spec import Strategy

log = logging.getLogger(__name__)


def open_runner(registry: Registry, settings: Settings) -> Runner:
    deployments = Deployments(registry)
    store = StoreSpec(
        settings.resolved_database_url,
        str(settings.resolved_blob_location),
        registry.actor,
        home=str(settings.home),
    )
    runner = Runner(Pipelines(registry), store, settings.home / "runs")

    def champion(pipeline: Pipeline) -> str | None:
        release = pipeline.config.release
        if release is not None and release.deployment is not None:
            try:
                return deployments.get(release.deployment).revision.spec.primary.ref
            except NotFound:
                pass  # not deployed yet: fall back to the model's own champion
        return runner.default_champion(pipeline)

    def release(pipeline: Pipeline, candidate: ModelVersion, gate: GateResult) -> dict[str, Any]:
        target = pipeline.config.release
        if target is None or target.deployment is None:
            return runner.release_by_alias(pipeline, candidate, gate)
        policy = parse_policy(target.policy) if target.policy is not None else None
        try:
            live = deployments.get(target.deployment)
        except NotFound:
            live = None
        strategy = Strategy.CANARY if live is not None else Strategy.DIRECT
        revision = deployments.deploy(
            target.deployment,
            candidate.ref,
            strategy=strategy,
            policy=policy if live is not None else None,
            reason=f"retrained; passed the gate against {gate.champion or 'no champion'}",
        )
        return {
            "deployment": target.deployment,
            "revision": revision.number,
            "strategy": strategy.value,
            "rollout": policy is not None and live is not None,
        }

    runner.find_champion = champion
    runner.release = release
    return runner


class RetrainLoop:
    """The control plane's retraining: checks schedules and label volumes every `tick_s`,
    takes alert events, and runs due pipelines in worker threads (at most `max_runs` at
    once; a pipeline already submitted is not submitted again)."""

    def __init__(self, runner: Runner, *, max_runs: int = 1) -> None:
        self.runner = runner
        self.triggers = Triggers(runner.pipelines, self._submit)
        self._pool = ThreadPoolExecutor(max_workers=max_runs, thread_name_prefix="retrain")
        self._submitted: set[str] = set()
        self._lock = threading.Lock()
        self.futures: list[Future[Run]] = []
        self._ticker = Ticker("retrain-triggers", self.tick, log)

    def tick(self, now: datetime | None = None) -> None:
        self.triggers.fire(self.triggers.due(now or datetime.now(UTC)))

    def on_alert(self, subject: str, rule: str, details: dict[str, object] | None = None) -> None:
        self.triggers.fire(self.triggers.on_alert(subject, rule, dict(details or {})))

    def _submit(self, due: Due) -> Run | None:
        with self._lock:
            if due.pipeline in self._submitted:
                return None  # debounce: one incident, one run
            self._submitted.add(due.pipeline)
        try:
            run = self.runner.start(due.pipeline, due.trigger, dict(due.details))
        except BaseException:
            self._done(due.pipeline)
            raise
        self.futures.append(self._pool.submit(self._execute, run))
        return run

    def submit(self, name: str, *, force: bool = False) -> Run:
        """Start a run of `name` now (the API's manual trigger); it trains in the background.
        Conflict while one runs; FailedPrecondition in the cool-down unless `force`."""
        with self._lock:
            if name in self._submitted:
                raise Conflict(f"a run of pipeline {name!r} is already queued or running")
            self._submitted.add(name)
        try:
            run = self.runner.start(name, "manual", respect_cooldown=not force)
        except BaseException:
            self._done(name)
            raise
        self.futures.append(self._pool.submit(self._execute, run))
        return run

    def _execute(self, run: Run) -> Run:
        try:
            return self.runner.execute(run)
        finally:
            self._done(run.pipeline)

    def _done(self, name: str) -> None:
        with self._lock:
            self._submitted.discard(name)

    def start(self, interval_s: float) -> None:
        """Check schedules and label volumes every `interval_s` in a daemon thread."""
        self._ticker.start(interval_s)

    def close(self, wait: bool = True) -> None:
        """Stop triggering runs. `wait`: let runs in progress finish; otherwise interrupt
        them (their training is killed, each ends FAILED as interrupted) and wait only for
        their records to be written, so shutting down never waits on training. Queued runs
        are not dropped (their records would stay `running`): they end FAILED as
        interrupted too, without training."""
        self._ticker.stop()
        if not wait:
            self.runner.interrupt()
        self._pool.shutdown(wait=True)
