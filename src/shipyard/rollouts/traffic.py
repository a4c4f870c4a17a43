"""A deployment's traffic over time: requests, errors and latency per version and time bucket.

    series = traffic(database, "web", since=timedelta(hours=1), step_s=60)

Summed from the `route_stats` rows data planes flush about every second (rollouts.recorder),
across revisions and data planes. Buckets are aligned to multiples of `step_s` since the Unix
epoch, so two calls agree on their edges. A row counts in the bucket of its flush time; a
flush carries up to one flush interval of traffic from just before it, so an edge may be off
by about a second.

Latency percentiles come from the bucket counts (stats.LATENCY_EDGES_S, log-spaced, ~9.4 %
wide): the upper edge of the bucket holding the percentile, as the rollout analysis reads
them. They overstate by less than one bucket width and are None when a time bucket had no
requests or the percentile is beyond the last finite edge (60 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from shipyard.core.errors import InvalidArgument
from shipyard.rollouts.spec import Role
from shipyard.rollouts.stats import VariantWindow, latency_counts
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import RouteStatsRow

MAX_BUCKETS = 1440  # a day by the minute: more points than a chart can show
MAX_STEP_S = 86_400
ROWS_PER_FETCH = 5000
PERCENTILES = (0.5, 0.95, 0.99)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class VersionTraffic:
    """One model version's traffic, one value per time bucket. Shadow copies (answers that
    were discarded) are a series of their own."""

    model: str
    version: int
    shadow: bool
    requests: list[int]
    errors: list[int]
    error_rate: list[float | None]  # None where there were no requests
    latency_s: dict[float, list[float | None]]  # percentile (0.5, 0.95, 0.99) -> values

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True, slots=True)
class Traffic:
    deployment: str
    start: datetime  # the first bucket's start (aligned), inclusive
    end: datetime  # when the series was read, exclusive
    step_s: int
    buckets: list[datetime]  # the start of each bucket
    series: list[VersionTraffic]  # live versions first, then shadows; by model and version


def bucket_starts(since: timedelta, step_s: int, now: datetime) -> list[datetime]:
    """Aligned bucket starts covering [now - since, now]; refuses more than MAX_BUCKETS."""
    if not 1 <= step_s <= MAX_STEP_S:
        raise InvalidArgument(f"step must be between 1 and {MAX_STEP_S} seconds, got {step_s}")
    if since <= timedelta(0):
        raise InvalidArgument("since must be a positive period")
    count = math.ceil(since.total_seconds() / step_s) + 1
    if count > MAX_BUCKETS:
        raise InvalidArgument(
            f"since {since} at a step of {step_s} s makes {count} points, more than "
            f"{MAX_BUCKETS}: use a larger step or a shorter period"
        )
    first = _floor(now - since, step_s)
    starts = [first + timedelta(seconds=i * step_s) for i in range(count)]
    return [s for s in starts if s <= now]


def _floor(moment: datetime, step_s: int) -> datetime:
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    return EPOCH + timedelta(seconds=seconds - seconds % step_s)


def traffic(
    database: Database,
    deployment: str,
    *,
    since: timedelta,
    step_s: int,
    now: datetime | None = None,
) -> Traffic:
    """Per version and bucket, what data planes recorded for `deployment` over `since`."""
    end = now or datetime.now(UTC)
    starts = bucket_starts(since, step_s, end)
    windows: dict[tuple[str, int, bool], list[VariantWindow]] = {}
    query = (
        select(
            RouteStatsRow.at,
            RouteStatsRow.model,
            RouteStatsRow.version,
            RouteStatsRow.role,
            RouteStatsRow.requests,
            RouteStatsRow.errors,
            RouteStatsRow.latency,
        )  # fmt: skip
        .where(
            RouteStatsRow.deployment == deployment,
            RouteStatsRow.at >= starts[0],
            RouteStatsRow.at < end,
        )
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    with database.read() as session:
        for at, model, version, role, requests, errors, latency in session.execute(query):
            index = int((at - starts[0]) // timedelta(seconds=step_s))
            if not 0 <= index < len(starts):  # flushed during this read
                continue
            key = (model, version, role == Role.SHADOW.value)
            row = windows.setdefault(key, [VariantWindow() for _ in starts])
            row[index].add(
                VariantWindow(requests=requests, errors=errors, latency=latency_counts(latency))
            )
    series = [_series(key, windows[key]) for key in sorted(windows, key=lambda k: (k[2], k[:2]))]
    return Traffic(deployment, starts[0], end, step_s, starts, series)


def _series(key: tuple[str, int, bool], windows: list[VariantWindow]) -> VersionTraffic:
    model, version, shadow = key
    return VersionTraffic(
        model=model,
        version=version,
        shadow=shadow,
        requests=[w.requests for w in windows],
        errors=[w.errors for w in windows],
        error_rate=[w.errors / w.requests if w.requests else None for w in windows],
        latency_s={q: [_percentile(w, q) for w in windows] for q in PERCENTILES},
    )


def _percentile(window: VariantWindow, q: float) -> float | None:
    if window.requests == 0:
        return None
    value = window.latency_quantile(q)
    return value if math.isfinite(value) else None
