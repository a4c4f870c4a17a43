"""The control plane's monitoring: every interval, each model with logged predictions has its
last window judged for drift against the reference data of the version that served it.

Judgements go to the AlertManager (hysteresis, notification budget, history, notifiers); an
alert that fires is handed to retraining, whose triggers start the pipelines that retrain on
it (with their own debounce and cool-down). Monitoring joins monitoring and jobs, so the app
wires it here; the judging itself is `monitoring.window_check`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd

from shipyard.app.ticker import Ticker
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alert_rules import DriftRule
from shipyard.monitoring.alerts import FIRING, Alert, AlertManager, Notifier
from shipyard.monitoring.eventlog import read_events
from shipyard.monitoring.gauges import MonitoringGauges
from shipyard.monitoring.notifiers import LogNotifier, WebhookNotifier
from shipyard.monitoring.window_check import DetectorCache, Judgement, judge, logged_models
from shipyard.packaging.register import PROFILE_FILE, load_reference
from shipyard.registry.service import Registry

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
        [DriftRule()],
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
        observation = judgement.observation
        if observation is None:
            self._not_judged(model, judgement.reason or "not judged")
            return ModelCheck(model, judgement)
        self._skipped.pop(model, None)
        if self.gauges is not None and observation.drift is not None:
            assert judgement.version is not None  # a judged window has its version
            self.gauges.observe_drift(model, judgement.version, observation.drift)
        return ModelCheck(model, judgement, tuple(self.manager.evaluate(observation)))

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
