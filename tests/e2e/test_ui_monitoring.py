"""The web UI's monitoring pages in headless Chromium against a real `shipyard server`: a
deployment's traffic charts, the drift of each live version with reference vs live histograms,
open and past alerts, and the empty states of a deployment with no traffic and versions with
no reference data or no logged predictions. The browser and tab fixtures are test_ui's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import test_ui
from serve_support import open_registry
from sklearn.linear_model import LogisticRegression
from test_server import control_plane, module_database, ok
from test_ui import Tab, Ui

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alerts import FIRING, RESOLVED, Alert
from shipyard.monitoring.eventlog import ParquetSink
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.stats import bucket_of, empty_latency
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import RouteStatsRow

pytestmark = pytest.mark.slow

# test_ui's fixtures, found by name: `tab` uses this module's `ui`.
browser = test_ui.browser
tab = test_ui.tab


def _seed(home: Path, url: str) -> None:
    """Deployment `web`: scorer:1 (reference data, logged predictions with `amount` shifted)
    and a canary scorer:2 (no reference data), with traffic and alerts about scorer.
    Deployment `quiet`: ranker:1 (reference data, nothing logged, no traffic, no alerts)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 2)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    reference = pd.DataFrame(
        {"amount": rng.normal(40, 5, 1000), "region": rng.choice(["eu", "us"], 1000)}
    )
    with open_registry(home, url) as registry:
        registry.register(model, "scorer", sample_input=X[:5], reference_data=reference)
        registry.register(model, "scorer", sample_input=X[:5])
        registry.register(model, "ranker", sample_input=X[:5], reference_data=reference)
        deployments = Deployments(registry.store)
        deployments.deploy("web", "scorer:1")
        deployments.deploy("web", "scorer:2", strategy="canary", weight=10)
        deployments.deploy("quiet", "ranker:1")
    now = datetime.now(UTC)
    sink = ParquetSink(home)
    sink.write([
        PredictionEvent(
            request_id=f"r{i}", model="scorer", version=1, at=now - timedelta(minutes=9, seconds=i),
            inputs={"amount": [float(rng.normal(55, 5))], "region": [str(rng.choice(["eu", "us"]))]},
            outputs={"proba": [0.5]}, latency_ms=1.0, deployment="web",
        )
        for i in range(400)
    ])  # fmt: skip
    sink.close()
    latency = empty_latency()
    latency[bucket_of(0.004)] = 90
    latency[bucket_of(0.050)] = 10
    with Database(url) as database:
        with database.write() as session:
            for minutes in (25, 15, 5):
                for version, role, requests, errors in (
                    (1, "primary", 100, 1),
                    (2, "candidate", 12, 3),
                ):
                    session.add(RouteStatsRow(
                        deployment="web", revision=2, model="scorer", version=version, role=role,
                        plane="t", at=now - timedelta(minutes=minutes), requests=requests,
                        errors=errors, latency=latency, predictions=[], shadow_total=0,
                        shadow_agree=0,
                    ))  # fmt: skip
        history = AlertHistory(database)
        for minutes, rule, state in (
            (50, "errors", FIRING),
            (40, "errors", RESOLVED),
            (8, "drift", FIRING),
        ):
            message = f"{rule} <b>{state}</b>"  # shown as text, never as markup
            history.record(
                Alert(rule, "scorer", state, "warning", message, now - timedelta(minutes=minutes))
            )


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui-monitoring")
    with module_database("sqlite", root) as url:
        _seed(root / "home", url)
        with control_plane(root / "home", url, root / "logs", "--no-controller") as server:
            assert server.admin_token is not None
            with server.client(server.admin_token) as admin:
                body = {"name": "ui-read", "scopes": ["read"]}
                read = ok(admin.post("/keys", json=body), 201)["token"]
            yield Ui(server, server.admin_token, server.admin_token, read, root / "home", url)


def _painted(tab: Tab, selector: str) -> int:
    tab.page.wait_for_selector(f"{selector} canvas")
    count: int = tab.page.evaluate(
        """s => {
        const c = document.querySelector(s + ' canvas');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""",
        selector,
    )
    return count


def test_a_deployment_monitoring_page(tab: Tab) -> None:
    tab.sign_in(tab.ui.read)
    tab.go("#/deployments/web", "#deployment-page")
    tab.page.click("#monitoring-link")
    tab.page.wait_for_selector("#monitoring-page #traffic")
    assert "#/monitoring/web" in tab.page.url
    totals = tab.page.locator("#traffic-totals tbody tr").all_inner_texts()
    assert [r.split("\t") for r in totals] == [
        ["scorer:1", "300", "3", "1.00%"],
        ["scorer:2", "36", "9", "25.00%"],
    ]
    for chart in ("#requests-chart", "#errors-chart", "#latency-chart"):
        assert _painted(tab, chart) > 300, chart
    legend = tab.text("#latency-chart .u-legend")
    assert "scorer:1 p50" in legend and "scorer:2 p99" in legend

    # Drift: scorer:1's shifted feature first, with its histogram; scorer:2 has no reference.
    drift = tab.page.locator("#drift .drift[data-ref='scorer:1']")
    assert "400 logged rows in the last hour against 1000 reference rows" in drift.inner_text()
    first = drift.locator(".feature").first
    assert first.get_attribute("data-feature") == "amount" and "drift" in first.inner_text()
    assert "median" in first.inner_text()
    assert _painted(tab, "#histogram-0") > 300
    assert "reference" in tab.text("#histogram-0 .u-legend")
    assert "live" in tab.text("#histogram-0 .u-legend")
    missing = tab.text("#drift .drift[data-ref='scorer:2'] .drift-empty")
    assert "no reference data registered for scorer:2" in missing

    # Alerts: the open one, and the whole history; markup in messages stays text.
    open_rows = tab.page.locator("#open-alerts > table > tbody > tr").all_inner_texts()
    assert len(open_rows) == 1 and "drift <b>firing</b>" in open_rows[0]
    assert len(tab.page.locator("#alert-history > table > tbody > tr").all()) == 3
    assert tab.page.locator("main b").count() == 0
    # Times in the viewer's zone (the context's is Asia/Kathmandu, UTC+5:45).
    first_time = tab.page.locator("#open-alerts time").first
    instant = datetime.fromisoformat(str(first_time.get_attribute("datetime")))
    local = instant.astimezone(ZoneInfo("Asia/Kathmandu"))
    assert local.strftime("%I:%M:%S %p") in first_time.inner_text()
    assert "GMT+5:45" in first_time.inner_text()

    # The overview from the nav: web has one open alert.
    tab.page.click("nav a[href='#/monitoring']")
    tab.page.wait_for_selector("#monitoring-overview")
    rows = {
        r.split("\t")[0]: r
        for r in tab.page.locator("#monitoring-overview table")
        .first.locator("tbody tr")
        .all_inner_texts()
    }
    assert "1 open" in rows["web"] and "none" in rows["quiet"]


def test_empty_states_of_a_quiet_deployment(tab: Tab) -> None:
    tab.sign_in(tab.ui.read)
    tab.go("#/monitoring/quiet", "#monitoring-page #no-traffic")
    assert tab.text("#no-traffic") == "No traffic in the last hour."
    assert "no logged predictions of ranker:1 in the last 1h" in tab.text("#drift .drift-empty")
    assert tab.text("#open-alerts") == "No open alerts."
    tab.page.click("#periods a:has-text('last 24 hours')")
    tab.page.wait_for_function(
        "() => document.querySelector('#no-traffic')?.innerText === 'No traffic in the last 24 hours.'"
    )
    tab.go("#/monitoring/nope", "#not-found")
    assert "deployment 'nope' not found" in tab.text("#not-found")
