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
