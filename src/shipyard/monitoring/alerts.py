"""Alerts: rules evaluated on observations of a model, with hysteresis and a notification budget.

    manager = AlertManager([DriftRule(), PerformanceRule("accuracy", below=0.8)],
                           notifiers=[LogNotifier(), WebhookNotifier(url)],
                           history=AlertHistory(database))
    manager.subscribe(on_alert)              # retraining listens here
    manager.evaluate(Observation("fraud", at, drift=result, realised=perf))

A rule looks at one Observation and says bad / good (or nothing, when the observation lacks its
data: a missing number neither fires nor resolves). An alert fires after `fire_after` bad windows
in a row and resolves after `resolve_after` good ones, so one noisy window does not page anyone.
Every transition is stored and published to subscribers; notifiers (people) get at most
`budget_per_hour` of them per rule, the rest are suppressed and counted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.alert_rules import Observation, Rule, Verdict

log = logging.getLogger(__name__)

FIRING = "firing"
RESOLVED = "resolved"
BUDGET_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Alert:
    rule: str
    subject: str  # model (or deployment) name
    state: str  # firing | resolved
    severity: str
    message: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    notified: bool = False  # False when the rule's budget suppressed the notification


class Notifier(Protocol):
    def notify(self, alert: Alert) -> None: ...


class AlertSink(Protocol):
    def record(self, alert: Alert) -> None: ...


Subscriber = Callable[[Alert], None]


@dataclass
class _State:
    firing: bool = False
    bad: int = 0  # consecutive bad windows
    good: int = 0  # consecutive good windows
    last: Verdict | None = None


class AlertManager:
    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        fire_after: int = 3,
        resolve_after: int = 3,
        budget_per_hour: int = 4,
        notifiers: Sequence[Notifier] = (),
        history: AlertSink | None = None,
    ) -> None:
        if fire_after < 1 or resolve_after < 1:
            raise InvalidArgument("fire_after and resolve_after must be at least 1")
        if budget_per_hour < 0:
            raise InvalidArgument(f"budget_per_hour must be >= 0, got {budget_per_hour}")
        names = [r.name for r in rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InvalidArgument(f"rule names must be unique: {', '.join(duplicated)}")
        self.rules = list(rules)
        self.fire_after, self.resolve_after = fire_after, resolve_after
        self.budget_per_hour = budget_per_hour
        self.notifiers = list(notifiers)
        self.history = history
        self.suppressed: dict[str, int] = {}  # rule -> notifications held back by the budget
        self.failed_notifications = 0
        self._states: dict[tuple[str, str], _State] = {}
        self._sent: dict[str, deque[datetime]] = {}
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(alert)` on every transition; returns the function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def firing(self, subject: str) -> list[str]:
        return [rule for (rule, s), st in self._states.items() if s == subject and st.firing]

    def evaluate(self, observation: Observation) -> list[Alert]:
        """Apply every rule to one window; returns the alerts that fired or resolved."""
        transitions: list[Alert] = []
        for rule in self.rules:
            verdict = rule.evaluate(observation)
            if verdict is None:
                continue
            state = self._states.setdefault((rule.name, observation.subject), _State())
            alert = self._step(rule, state, verdict, observation)
            if alert is not None:
                transitions.append(self._deliver(alert))
        return transitions

    def _step(self, rule: Rule, state: _State, verdict: Verdict, obs: Observation) -> Alert | None:
        state.bad, state.good = (state.bad + 1, 0) if verdict.bad else (0, state.good + 1)
        if verdict.bad:
            state.last = verdict
        # A deployment's alert names its model: retraining and people look for it there.
        about = {"model": obs.model} if obs.model is not None else {}
        if not state.firing and state.bad >= self.fire_after:
            state.firing = True
            windows = f"{state.bad} windows in a row" if state.bad > 1 else "this window"
            message = f"{verdict.message} ({windows})"
            details = {**verdict.details, **about, "bad_windows": state.bad}
            return Alert(rule.name, obs.subject, FIRING, rule.severity, message, obs.at, details)
        if state.firing and state.good >= self.resolve_after:
            state.firing = False
            message = f"resolved: {verdict.message} ({state.good} good windows in a row)"
            details = {**verdict.details, **about, "good_windows": state.good}
            return Alert(rule.name, obs.subject, RESOLVED, rule.severity, message, obs.at, details)
        return None

    def _deliver(self, alert: Alert) -> Alert:
        if self._within_budget(alert):
            alert = replace(alert, notified=True)
            for notifier in self.notifiers:
                try:
                    notifier.notify(alert)
                except Exception:  # one broken notifier must not silence the others
                    self.failed_notifications += 1
                    log.exception("notifier %s failed for alert %s", notifier, alert.rule)
        else:
            self.suppressed[alert.rule] = self.suppressed.get(alert.rule, 0) + 1
            log.warning("alert %s on %s suppressed by its budget", alert.rule, alert.subject)
        if self.history is not None:
            self.history.record(alert)
        for callback in list(self._subscribers):
            try:
                callback(alert)
            except Exception:
                log.exception("alert subscriber %s failed", callback)
        return alert

    def _within_budget(self, alert: Alert) -> bool:
        sent = self._sent.setdefault(alert.rule, deque())
        while sent and alert.at - sent[0] >= BUDGET_WINDOW:
            sent.popleft()
        if len(sent) >= self.budget_per_hour:
            return False
        sent.append(alert.at)
        return True
