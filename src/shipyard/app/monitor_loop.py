"""The control plane's monitoring: every interval, each model with logged predictions has its
last window judged for drift against the reference data of the version that served it, and,
when configured, for a latency SLO (p95), realised performance from feedback and the error
rate the data planes counted.

Judgements go to the AlertManager (hysteresis, notification budget, history, notifiers); an
alert that fires is handed to retraining, whose triggers start the pipelines that retrain on
it (with their own debounce and cool-down). Monitoring joins monitoring and jobs, so the app
wires it here; the judging itself is `monitoring.window_check`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
from sqlalchemy import func, select

from shipyard.app.ticker import Ticker
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alert_rules import (
    DriftRule,
    ErrorRateRule,
    LatencyRule,
    Observation,
    PerformanceRule,
    Rule,
    performance_rule,
)
from shipyard.monitoring.alerts import FIRING, Alert, AlertManager, Notifier
from shipyard.monitoring.eventlog import read_events
from shipyard.monitoring.feedback import FeedbackStore
from shipyard.monitoring.gauges import MonitoringGauges
from shipyard.monitoring.notifiers import LogNotifier, WebhookNotifier
from shipyard.monitoring.window_check import (
    DetectorCache,
    Judgement,
    judge,
    latency_p95,
    logged_models,
    realised_performance,
)
from shipyard.packaging.register import PROFILE_FILE, load_reference
from shipyard.registry.service import Registry
from shipyard.rollouts.spec import Role
from shipyard.storage.deployments_table import RouteStatsRow

log = logging.getLogger(__name__)

MAX_WINDOW_EVENTS = 200_000  # newest events read per window: bounds memory on a busy model

# What a fired alert is handed to: RetrainLoop.on_alert(subject, rule, details).
AlertHandler = Callable[[str, str, dict[str, object]], None]


@dataclass(frozen=True)
class MonitorConfig:
    window: timedelta = timedelta(hours=1)
    min_rows: int = 200
    fire_after: int = 3
    resolve_after: int = 3
    budget_per_hour: int = 4
    webhook_url: str | None = None
    latency_p95_ms: float | None = None  # an SLO: alert "latency p95" when a window is above
    max_error_rate: float | None = None  # alert "error rate" above it (deployments' statistics)
    performance: str | None = None  # e.g. "accuracy<0.9": alert "realised accuracy"
    min_labelled: int = 50  # labelled rows a window needs for its realised performance

    def rules(self) -> list[Rule]:
        chosen: list[Rule] = [DriftRule()]
        if self.latency_p95_ms is not None:
            chosen.append(LatencyRule(self.latency_p95_ms))
        if self.max_error_rate is not None:
            chosen.append(ErrorRateRule(self.max_error_rate))
        if self.performance is not None:
            chosen.append(performance_rule(self.performance))
        return chosen


@dataclass(frozen=True)
class ModelCheck:
    """What one tick did for one model."""

    model: str
    judgement: Judgement | None  # None when the check failed
    alerts: tuple[Alert, ...] = ()
    error: str | None = None


def reference_loader(registry: Registry) -> Callable[[str, int], pd.DataFrame | None]:
    """The reference table stored with a version at registration, or None without one."""

    def load(model: str, version: int) -> pd.DataFrame | None:
        return load_reference(registry, registry.get_version(model, version))

    return load


def profile_loader(registry: Registry) -> Callable[[str, int], bytes | None]:
    """The drift profile stored with a version at registration, or None without one."""

    def load(model: str, version: int) -> bytes | None:
        found = registry.get_version(model, version)
        if PROFILE_FILE not in found.artifacts:
            return None
        return registry.artifact_paths(found, [PROFILE_FILE])[PROFILE_FILE].read_bytes()

    return load


def retrain_on_fire(handler: AlertHandler) -> Callable[[Alert], None]:
    """An AlertManager subscriber passing fired alerts (not resolutions) to `handler`."""

    def forward(alert: Alert) -> None:
        if alert.state != FIRING:
            return
        # Through JSON once: the details end in the run record and the ledger, and
        # PostgreSQL JSON takes neither numpy numbers nor NaN.
        options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        details = orjson.loads(orjson.dumps(alert.details, option=options, default=str))
        handler(alert.subject, alert.rule, {"message": alert.message, **details})

    return forward


def alert_manager(
    registry: Registry,
    config: MonitorConfig,
    *,
    on_fire: AlertHandler | None = None,
    notifiers: list[Notifier] | None = None,
) -> AlertManager:
    """Drift alerts recorded in the registry's database, logged, POSTed to the configured
    webhook, and passed to `on_fire` (retraining) when they fire."""
    chosen: list[Notifier] = [LogNotifier()] if notifiers is None else list(notifiers)
    if notifiers is None and config.webhook_url is not None:
        chosen.append(WebhookNotifier(config.webhook_url))
    manager = AlertManager(
        config.rules(),
        fire_after=config.fire_after,
        resolve_after=config.resolve_after,
        budget_per_hour=config.budget_per_hour,
        notifiers=chosen,
        history=AlertHistory(registry.database),
    )
    if on_fire is not None:
        manager.subscribe(retrain_on_fire(on_fire))
    return manager


class MonitorLoop:
    def __init__(
        self,
        registry: Registry,
        home: Path,
        manager: AlertManager,
        config: MonitorConfig,
        *,
        gauges: MonitoringGauges | None = None,
        max_events: int = MAX_WINDOW_EVENTS,
    ) -> None:
        self.home = home
        self.database = registry.database  # the table sink: what replicas elsewhere log
        self.manager = manager
        self.config = config
        self.gauges = gauges
        self.max_events = max_events
        self.cache = DetectorCache(reference_loader(registry), profiles=profile_loader(registry))
        # model -> the reason (or error) last logged: a lasting condition is logged once,
        # not every interval
        self._skipped: dict[str, str] = {}
        self._failed: dict[str, str] = {}
        self._ticker = Ticker("monitoring", self.tick, log)
        if gauges is not None:
            manager.subscribe(gauges.on_alert)

    def tick(self, now: datetime | None = None) -> list[ModelCheck]:
        """Judge the last window of every logged model once; one model failing is logged
        and the others are still judged."""
        at = now or datetime.now(UTC)
        checks = []
        since = at - self.config.window
        for model in logged_models(self.home, self.database, since):
            try:
                checks.append(self.check(model, at))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                checks.append(ModelCheck(model, None, error=error))
                if self._failed.get(model) == error:  # logged with its traceback already
                    log.debug("monitoring %s failed again: %s", model, error)
                    continue
                self._failed[model] = error
                log.exception("monitoring %s failed; the other models are still checked", model)
        return checks

    def check(self, model: str, at: datetime) -> ModelCheck:
        events = read_events(
            self.home,
            model=model,
            since=at - self.config.window,
            until=at,
            limit=self.max_events,
            database=self.database,
        )
        judgement = judge(model, events, self.cache, at=at, min_rows=self.config.min_rows)
        self._failed.pop(model, None)
        if judgement.observation is None:
            self._not_judged(model, judgement.reason or "not judged")
        else:
            self._skipped.pop(model, None)
        alerts: list[Alert] = []
        # Read once per window, when a performance rule asks: the model's window and each
        # deployment's part of it join the same feedback.
        labels = functools.cache(
            lambda: FeedbackStore(self.database).values(events["request_id"].dropna().tolist())
        )
        observation = self._with_service_numbers(judgement, events, at, labels)
        if observation is not None:
            if self.gauges is not None and observation.drift is not None:
                assert judgement.version is not None  # a judged window has its version
                self.gauges.observe_drift(model, judgement.version, observation.drift)
            alerts += self.manager.evaluate(observation)
        for deployment, rows in _by_deployment(events):
            part = judge(
                model, rows, self.cache, at=at, min_rows=self.config.min_rows,
                deployment=deployment,
            )  # fmt: skip
            seen = self._with_service_numbers(part, rows, at, labels, deployment)
            if seen is not None:
                alerts += self.manager.evaluate(seen)
        return ModelCheck(model, judgement, tuple(alerts))

    def _with_service_numbers(
        self,
        judgement: Judgement,
        events: pd.DataFrame,
        at: datetime,
        labels: Callable[[], Mapping[str, object]],
        deployment: str | None = None,
    ) -> Observation | None:
        """The drift observation with latency p95, error rate and realised performance added,
        for the rules configured; a window too small for drift is too small for these too."""
        config, version = self.config, judgement.version
        if version is None or judgement.n_rows < config.min_rows:
            return judgement.observation
        if (config.latency_p95_ms, config.performance, config.max_error_rate) == (None,) * 3:
            return judgement.observation
        rows = events[events["version"] == version]
        base = judgement.observation or Observation.of(
            judgement.model, at, version=version, deployment=deployment
        )
        latency = latency_p95(rows) if config.latency_p95_ms is not None else None
        errors = None
        if config.max_error_rate is not None:
            errors = self._error_rate(judgement.model, version, at - config.window, at, deployment)
        realised = None
        rule = next((r for r in self.manager.rules if isinstance(r, PerformanceRule)), None)
        if rule is not None:
            realised = realised_performance(rows, labels(), min_labelled=config.min_labelled)
            if realised is not None and rule.metric not in realised.metrics:
                realised = None  # an accuracy rule says nothing of a regression model
        return dataclasses.replace(
            base, latency_p95_ms=latency, realised=realised, error_rate=errors
        )

    def _error_rate(
        self,
        model: str,
        version: int,
        since: datetime,
        until: datetime,
        deployment: str | None = None,
    ) -> float | None:
        """Errors per request of `model` v`version` in the window, from the route statistics
        every data plane writes for the deployments it serves (shadow copies left out: their
        answers are never returned); None below min_rows requests."""
        statement = select(
            func.coalesce(func.sum(RouteStatsRow.requests), 0),
            func.coalesce(func.sum(RouteStatsRow.errors), 0),
        ).where(
            RouteStatsRow.model == model,
            RouteStatsRow.version == version,
            RouteStatsRow.role != Role.SHADOW.value,
            RouteStatsRow.at > since,
            RouteStatsRow.at <= until,
        )
        if deployment is not None:
            statement = statement.where(RouteStatsRow.deployment == deployment)
        with self.database.read() as session:
            requests, errors = session.execute(statement).one()
        return int(errors) / int(requests) if int(requests) >= self.config.min_rows else None

    def _not_judged(self, model: str, reason: str) -> None:
        level = logging.DEBUG if self._skipped.get(model) == reason else logging.INFO
        self._skipped[model] = reason
        log.log(level, "monitoring: %s not judged: %s", model, reason)

    def start(self, interval_s: float) -> None:
        """Tick every `interval_s` in a daemon thread."""
        self._ticker.start(interval_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop ticking; waits up to `timeout_s` for a tick in progress (it uses the registry
        the caller is about to close)."""
        self._ticker.stop(timeout_s)
        for notifier in self.manager.notifiers:
            if isinstance(notifier, WebhookNotifier):
                notifier.close()


def open_monitor(
    registry: Registry,
    home: Path,
    config: MonitorConfig,
    *,
    on_fire: AlertHandler | None = None,
    gauges: MonitoringGauges | None = None,
) -> MonitorLoop:
    return MonitorLoop(
        registry, home, alert_manager(registry, config, on_fire=on_fire), config, gauges=gauges
    )


def _by_deployment(events: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A model's window split by the deployment that served it, when it served two or more:
    drift in one deployment's traffic (one region, one client) is diluted in the model's
    window, so each deployment is judged as well, under its own name."""
    if "deployment" not in events.columns:
        return []
    names = sorted(str(d) for d in events["deployment"].dropna().unique())
    if len(names) < 2:
        return []
    return [(name, events[events["deployment"] == name]) for name in names]
