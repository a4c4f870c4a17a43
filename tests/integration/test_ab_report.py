"""The A/B report on SQLite and PostgreSQL, from route statistics, predictions and feedback
written as the data planes write them: exact counts, Wilson intervals, the difference from the
primary, the current revision only, `since`, shadows, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from shipyard.core.errors import InvalidArgument, NotFound
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.rollouts.abreport import AbReport, ab_report, compare, wilson
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.stats import BUCKETS, LATENCY_EDGES_S, bucket_of
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow, RouteStatsRow
from shipyard.storage.tables import utcnow


@pytest.fixture
def deployments(registry: Registry, tmp_path: Path) -> Deployments:
    path = tmp_path / "m.onnx"
    for index in range(3):
        path.write_bytes(b"model %d" % index)
        registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))
    return Deployments(registry)


def flush(
    database: Database,
    name: str,
    revision: int,
    version: int,
    *,
    requests: int,
    errors: int,
    seconds: float = 0.010,
    role: str = "primary",
    at: datetime | None = None,
) -> None:
    latency = [0] * BUCKETS
    latency[bucket_of(seconds)] = requests
    row = {
        "deployment": name,
        "revision": revision,
        "model": "fraud",
        "version": version,
        "role": role,
        "plane": "test:1",
        "at": at or utcnow(),
        "requests": requests,
        "errors": errors,
        "latency": latency,
        "predictions": [],
        "shadow_total": requests if role == "shadow" else 0,
        "shadow_agree": requests - errors if role == "shadow" else 0,
    }
    with database.write() as session:
        session.execute(insert(RouteStatsRow), [row])


def label(
    database: Database,
    name: str,
    revision: int,
    version: int,
    *,
    right: int,
    wrong: int,
    at: datetime | None = None,
) -> None:
    """`right + wrong` predictions of class 1 with feedback, `right` of them saying 1."""
    when = at or utcnow()
    predictions: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for index in range(right + wrong):
        request_id = f"{name}-{revision}-{version}-{when.timestamp()}-{index}"
        predictions.append(
            {"request_id": request_id, "deployment": name, "revision": revision,
             "model": "fraud", "version": version, "at": when, "output": [1]}
        )  # fmt: skip
        truth = 1 if index < right else 0
        feedback.append({"request_id": request_id, "value": truth, "at": when, "actor": "t"})
    with database.write() as session:
        session.execute(insert(PredictionRow), predictions)
        session.execute(insert(FeedbackRow), feedback)


def row_counts(database: Database) -> tuple[int, ...]:
    with database.read() as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (RouteStatsRow, PredictionRow, FeedbackRow)
        )


def test_a_b_report_counts_rates_intervals_and_differences(deployments: Deployments) -> None:
    database = deployments.database
    deployments.deploy("d", "fraud:1")
    flush(database, "d", 1, 1, requests=500, errors=50)  # revision 1: not in the report
    label(database, "d", 1, 1, right=0, wrong=30)
    deployments.deploy("d", "fraud:2", strategy="ab")  # revision 2, 50/50
    for _ in range(2):  # two flushes of each variant add up
        flush(database, "d", 2, 1, requests=500, errors=10, seconds=0.010)
        flush(database, "d", 2, 2, requests=500, errors=20, seconds=0.030, role="candidate")
    flush(database, "other", 2, 1, requests=900, errors=900)  # another deployment
    label(database, "d", 2, 1, right=90, wrong=10)
    label(database, "d", 2, 2, right=70, wrong=30)
    report = ab_report(deployments, "d")
    assert (report.deployment, report.revision, report.strategy) == ("d", 2, "ab")
    primary, candidate = report.variants
    assert (primary.ref, primary.role, primary.weight) == ("fraud:1", "primary", 50)
    assert (candidate.ref, candidate.role, candidate.weight) == ("fraud:2", "candidate", 50)
    assert (primary.requests, primary.errors, primary.error_rate) == (1000, 20, 0.02)
    assert (candidate.requests, candidate.errors, candidate.error_rate) == (1000, 40, 0.04)
    assert primary.error_rate_ci == wilson(20, 1000)
    assert primary.error_rate_ci == pytest.approx((0.012984, 0.030690), abs=1e-6)
    assert primary.latency_p50_s == LATENCY_EDGES_S[bucket_of(0.010)]
    assert candidate.latency_p95_s == LATENCY_EDGES_S[bucket_of(0.030)]
    assert (primary.feedback, primary.accuracy, candidate.accuracy) == (100, 0.9, 0.7)
    assert candidate.accuracy_ci == wilson(70, 100)
    assert primary.error_rate_vs_primary is None
    errors = candidate.error_rate_vs_primary
    assert errors == compare(40, 1000, 20, 1000)
    assert errors is not None and errors.difference == pytest.approx(0.02)
    assert errors.interval[0] > 0 and errors.p_value < 0.05  # the candidate errs more
    accuracy = candidate.accuracy_vs_primary
    assert accuracy is not None and accuracy.difference == pytest.approx(-0.2)
    assert accuracy.interval[1] < 0 and accuracy.p_value < 0.01
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["variants"][1]["error_rate_vs_primary"]["ci"] == list(errors.interval)
    assert data["since"] is None and data["confidence"] == 0.95


def test_since_limits_the_report_to_recent_traffic(deployments: Deployments) -> None:
    database = deployments.database
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2", strategy="canary", weight=20)
    old = utcnow() - timedelta(hours=2)
    flush(database, "d", 2, 1, requests=800, errors=80, at=old)
    label(database, "d", 2, 2, right=0, wrong=40, at=old)
    flush(database, "d", 2, 1, requests=400, errors=4)
    flush(database, "d", 2, 2, requests=100, errors=1, role="candidate")
    since = utcnow() - timedelta(hours=1)
    report = ab_report(deployments, "d", since=since)
    primary, candidate = report.variants
    assert (primary.requests, primary.errors, candidate.requests) == (400, 4, 100)
    assert candidate.feedback == 0 and candidate.accuracy is None
    assert report.to_json()["since"] == since.isoformat()
    assert ab_report(deployments, "d").variants[0].requests == 1200


def test_a_shadow_gets_its_own_row(deployments: Deployments) -> None:
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:3", strategy="shadow")
    flush(deployments.database, "d", 2, 1, requests=300, errors=3)
    flush(deployments.database, "d", 2, 3, requests=300, errors=30, role="shadow")
    primary, shadow = ab_report(deployments, "d").variants
    assert (primary.ref, primary.weight) == ("fraud:1", 100)
    assert (shadow.ref, shadow.role, shadow.weight, shadow.errors) == ("fraud:3", "shadow", 0, 30)
    assert shadow.error_rate_vs_primary == compare(30, 300, 3, 300)


def test_a_deployment_without_traffic_reports_no_rates(deployments: Deployments) -> None:
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2", strategy="ab")
    report = ab_report(deployments, "d")
    for variant in report.variants:
        assert variant.requests == 0 and variant.error_rate is None
        assert variant.error_rate_ci is None and variant.latency_p95_s is None
    assert report.variants[1].error_rate_vs_primary is None
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["variants"][1]["accuracy_vs_primary"] is None


def test_bad_input_is_refused_and_changes_nothing(deployments: Deployments) -> None:
    database = deployments.database
    deployments.deploy("d", "fraud:1")
    flush(database, "d", 1, 1, requests=10, errors=1)
    before = (row_counts(database), deployments.revisions("d"))
    with pytest.raises(NotFound, match="deployment 'nope' not found"):
        ab_report(deployments, "nope")
    with pytest.raises(InvalidArgument, match="since must be a timezone-aware"):
        ab_report(deployments, "d", since=datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument):
        ab_report(deployments, "../d")
    assert (row_counts(database), deployments.revisions("d")) == before
    assert isinstance(ab_report(deployments, "d", since=datetime(2026, 1, 1, tzinfo=UTC)), AbReport)
