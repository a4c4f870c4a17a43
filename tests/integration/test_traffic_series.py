"""A deployment's traffic over time from `route_stats` (SQLite and PostgreSQL): rows summed per
version and aligned bucket across data planes and revisions, shadows apart, other deployments
and rows outside the window left out; bad periods and steps refused before any query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.rollouts.stats import LATENCY_EDGES_S, bucket_of, empty_latency
from shipyard.rollouts.traffic import MAX_BUCKETS, bucket_starts, traffic
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import RouteStatsRow

NOW = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    with Database(database_url) as db:
        yield db


def _row(
    at: datetime, version: int, requests: int, errors: int, *, role: str = "primary",
    deployment: str = "web", revision: int = 1, plane: str = "a", latency_s: float = 0.002,
) -> RouteStatsRow:  # fmt: skip
    latency = empty_latency()
    latency[bucket_of(latency_s)] = requests
    return RouteStatsRow(
        deployment=deployment, revision=revision, model="m", version=version, role=role,
        plane=plane, at=at, requests=requests, errors=errors, latency=latency, predictions=[],
        shadow_total=0, shadow_agree=0,
    )  # fmt: skip


def test_rows_are_summed_per_version_and_aligned_bucket(database: Database) -> None:
    minute = datetime(2026, 5, 1, 11, 58, tzinfo=UTC)
    with database.write() as session:
        session.add_all([
            _row(minute + timedelta(seconds=5), 1, 10, 1, plane="a"),
            _row(minute + timedelta(seconds=50), 1, 30, 0, plane="b", revision=2),
            _row(minute + timedelta(seconds=70), 2, 4, 4, role="candidate", latency_s=0.5),
            _row(minute + timedelta(seconds=20), 2, 7, 0, role="shadow"),
            _row(minute, 1, 1000, 0, deployment="other"),
            _row(NOW - timedelta(hours=2), 1, 1000, 0),  # before the window
        ])  # fmt: skip
    found = traffic(database, "web", since=timedelta(minutes=3), step_s=60, now=NOW)
    assert found.buckets == [datetime(2026, 5, 1, 11, m, tzinfo=UTC) for m in (57, 58, 59)] + [
        datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ]
    assert found.start == found.buckets[0] and found.end == NOW and found.step_s == 60
    assert [(s.ref, s.shadow) for s in found.series] == [
        ("m:1", False),
        ("m:2", False),
        ("m:2", True),
    ]
    one, two, shadow = found.series
    assert one.requests == [0, 40, 0, 0] and one.errors == [0, 1, 0, 0]
    assert one.error_rate == [None, 0.025, None, None]
    assert two.requests == [0, 0, 4, 0] and two.error_rate[2] == 1.0
    assert shadow.requests == [0, 7, 0, 0]
    edge = LATENCY_EDGES_S[bucket_of(0.002)]
    assert one.latency_s[0.5] == [None, edge, None, None] and one.latency_s[0.99][1] == edge
    assert two.latency_s[0.95][2] == LATENCY_EDGES_S[bucket_of(0.5)] >= 0.5


def test_no_rows_no_series_and_slow_requests_have_no_percentile(database: Database) -> None:
    assert traffic(database, "web", since=timedelta(hours=1), step_s=60, now=NOW).series == []
    with database.write() as session:
        session.add(_row(NOW - timedelta(seconds=10), 1, 3, 0, latency_s=120.0))  # beyond 60 s
    (series,) = traffic(database, "web", since=timedelta(hours=1), step_s=300, now=NOW).series
    assert sum(series.requests) == 3
    assert all(v is None for v in series.latency_s[0.5])


@pytest.mark.parametrize(
    ("since", "step", "message"),
    [
        (timedelta(hours=1), 0, "step must be between 1 and 86400 seconds, got 0"),
        (timedelta(hours=1), 86_401, "step must be between 1 and 86400"),
        (timedelta(0), 60, "since must be a positive period"),
        (timedelta(days=2), 60, f"more than {MAX_BUCKETS}: use a larger step"),
    ],
)
def test_bad_periods_and_steps_are_refused(
    database: Database, since: timedelta, step: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        traffic(database, "web", since=since, step_s=step, now=NOW)


def test_buckets_cover_the_period_and_end_at_now() -> None:
    starts = bucket_starts(timedelta(hours=1), 600, NOW)
    assert starts[0] == datetime(2026, 5, 1, 11, 0, tzinfo=UTC) and starts[-1] <= NOW
    assert len(starts) == 7 and all(s.minute % 10 == 0 and s.second == 0 for s in starts)
