"""The control plane's monitoring settings (SHIPYARD_SERVER_*): defaults, the environment,
and values refused with the field named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from shipyard.app.control import ControlSettings
from shipyard.app.monitor_loop import MonitorConfig


def test_defaults_judge_the_last_hour_every_minute() -> None:
    control = ControlSettings()
    assert control.monitor_interval_s == 60.0
    assert control.monitor_config() == MonitorConfig(window=timedelta(hours=1), min_rows=200)


def test_the_environment_sets_monitoring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_SERVER_MONITOR_INTERVAL_S", "0")
    monkeypatch.setenv("SHIPYARD_SERVER_MONITOR_WINDOW_S", "600")
    monkeypatch.setenv("SHIPYARD_SERVER_ALERT_FIRE_AFTER", "1")
    monkeypatch.setenv("SHIPYARD_SERVER_ALERT_WEBHOOK_URL", "https://alerts.example/hook")
    control = ControlSettings()
    assert control.monitor_interval_s == 0  # off
    config = control.monitor_config()
    assert config.window == timedelta(minutes=10) and config.fire_after == 1
    assert config.webhook_url == "https://alerts.example/hook"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("monitor_interval_s", -1),
        ("monitor_window_s", 0),
        ("monitor_min_rows", 0),
        ("alert_fire_after", 0),
        ("alert_resolve_after", 0),
        ("alert_budget_per_hour", -1),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        ControlSettings.model_validate({field: value})
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_the_environment_adds_latency_and_performance_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHIPYARD_SERVER_ALERT_LATENCY_P95_MS", "25")
    monkeypatch.setenv("SHIPYARD_SERVER_ALERT_PERFORMANCE", "rmse>2.5")
    monkeypatch.setenv("SHIPYARD_SERVER_MONITOR_MIN_LABELLED", "30")
    monkeypatch.setenv("SHIPYARD_SERVER_ALERT_MAX_ERROR_RATE", "0.02")
    config = ControlSettings().monitor_config()
    assert (config.latency_p95_ms, config.performance, config.min_labelled) == (25, "rmse>2.5", 30)
    assert config.max_error_rate == 0.02
    assert [rule.name for rule in config.rules()] == [
        "drift", "latency p95", "error rate", "realised rmse",
    ]  # fmt: skip
    assert [rule.name for rule in MonitorConfig().rules()] == ["drift"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("accuracy>0.9", "accuracy gets worse as it falls; write accuracy<0.9"),
        ("rmse<2", "rmse gets worse as it rises; write rmse>2"),
        ("speed<3", "unknown metric; known: accuracy, precision"),
        ("accuracy below 0.9", "write METRIC<VALUE (accuracy<0.9) or METRIC>VALUE"),
    ],
)
def test_a_bad_performance_rule_is_refused_saying_how_to_write_it(spec: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ControlSettings(alert_performance=spec)
    [error] = caught.value.errors()
    assert error["loc"] == ("alert_performance",) and message in error["msg"], error["msg"]
    with pytest.raises(ValidationError, match="alert_latency_p95_ms"):
        ControlSettings(alert_latency_p95_ms=0)
    with pytest.raises(ValidationError, match="alert_max_error_rate"):
        ControlSettings(alert_max_error_rate=1.5)
