"""GET /metrics of the management API, built in-process on SQLite and PostgreSQL: what the
monitoring gauges hold, in Prometheus text format, for a key with the read scope only."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import httpx
import numpy as np
import pandas as pd
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from shipyard.auth.audit import AuditLog
from shipyard.auth.keys import KeyStore
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.alerts import FIRING, Alert
from shipyard.monitoring.gauges import MonitoringGauges
from shipyard.registry.service import Registry
from shipyard.transports.api.app import create_app

NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)


def _get(app: FastAPI, path: str, token: str | None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return await client.get(path, headers=headers)

    return anyio.run(go)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_show_the_last_drift_check_and_firing_alerts(registry: Registry) -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    window = pd.DataFrame({"a": rng.normal(size=500) + 2.0, "b": rng.normal(size=500)})
    result = DriftDetector.fit(reference).check(window)
    exposed = CollectorRegistry()
    gauges = MonitoringGauges(exposed)
    gauges.observe_drift("fraud", 2, result)
    gauges.on_alert(Alert("drift", "fraud", FIRING, "warning", "feature `a` shifted", NOW))
    keys = KeyStore.for_registry(registry)
    _, reader = keys.create("prometheus", ["read"])
    app = create_app(registry, key_store=keys, metrics_registry=exposed)

    response = _get(app, "/metrics", reader)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = _samples(response.text)
    at = (("feature", "a"), ("model", "fraud"), ("version", "2"))
    assert samples[("shipyard_drift_detected", at)] == 1.0
    assert samples[("shipyard_drift_p_value", at)] == result.features["a"].p_value < 1e-6
    calm = (("feature", "b"), ("model", "fraud"), ("version", "2"))
    assert samples[("shipyard_drift_detected", calm)] == 0.0
    overall = (("feature", "_overall"), ("model", "fraud"), ("version", "2"))
    assert samples[("shipyard_drift_detected", overall)] == 1.0
    assert samples[("shipyard_alerts_firing", (("model", "fraud"), ("rule", "drift")))] == 1.0


def test_metrics_need_a_key_with_the_read_scope(registry: Registry) -> None:
    keys = KeyStore.for_registry(registry)
    _, predictor = keys.create("app", ["predict"])
    app = create_app(registry, key_store=keys)
    missing, wrong = _get(app, "/metrics", None), _get(app, "/metrics", predictor)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    assert wrong.status_code == 403 and "read" in wrong.json()["error"]
    assert "shipyard_drift" not in missing.text + wrong.text
    # Refusals are audited under the path that was called.
    actions = [(e.action, e.status) for e in AuditLog(registry.database).query()]
    assert actions == [("GET /metrics", 403), ("GET /metrics", 401)]


def test_an_api_without_monitoring_exposes_an_empty_registry(registry: Registry) -> None:
    keys = KeyStore.for_registry(registry)
    _, reader = keys.create("prometheus", ["read"])
    response = _get(create_app(registry, key_store=keys), "/metrics", reader)
    assert response.status_code == 200 and response.text == ""
