"""Monitoring endpoints: a deployment's traffic over time, the alert history, and the drift of
a model version's logged predictions against its reference data. All need the read scope.

The computing lives below (rollouts.traffic, monitoring.drift_view); these only parse the
query, fetch the inputs and shape the answer. A drift view reads every logged request of the
window (twice, in pages of bounded size) and tests every feature, and the web UI polls it: an
answer is kept for
`ApiOptions.drift_cache_s` (its `until` says when it was computed).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from cachetools import TTLCache
from fastapi import APIRouter, Query, Request

from shipyard.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from shipyard.core.refs import ModelRef, check_name
from shipyard.monitoring.alert_history import MAX_LIST, AlertHistory
from shipyard.monitoring.alerts import FIRING, Alert
from shipyard.monitoring.drift_view import DriftView, NoLiveRows, drift_view_of
from shipyard.monitoring.eventlog import iter_events, parse_age
from shipyard.packaging.register import load_reference
from shipyard.registry.models import ModelVersion
from shipyard.registry.service import Registry
from shipyard.rollouts.traffic import MAX_STEP_S, traffic
from shipyard.storage.database import Database
from shipyard.transports.api.context import Caller, services
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.monitoring_schemas import AlertOut, DriftOut, TrafficOut
from shipyard.transports.api.security import READ

router = APIRouter(responses=ERROR_RESPONSES, tags=["monitoring"])

MAX_TRAFFIC_AGE = timedelta(days=31)
MAX_DRIFT_AGE = timedelta(days=366)
MAX_SUBJECTS = 20
MAX_CACHED_VIEWS = 256
DRIFT_CACHE_STATE = "shipyard_drift_cache"  # app.state attribute holding a DriftCache


class DriftCache:
    """Drift views by (model, version, deployment, since), each kept `ttl_s` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self._views: TTLCache[Hashable, DriftOut] | None = (
            TTLCache(MAX_CACHED_VIEWS, ttl_s) if ttl_s > 0 else None
        )
        self._lock = threading.Lock()  # endpoints run in a thread pool; TTLCache is not safe

    def get(self, key: Hashable) -> DriftOut | None:
        if self._views is None:
            return None
        with self._lock:
            return self._views.get(key)

    def put(self, key: Hashable, view: DriftOut) -> None:
        if self._views is not None:
            with self._lock:
                self._views[key] = view


def _drift_cache(request: Request) -> DriftCache:
    cache: DriftCache = getattr(request.app.state, DRIFT_CACHE_STATE)  # set by create_app
    return cache


Age = Annotated[str, Query(max_length=20, description="A period: 90min, 1h, 24h, 7d.")]


def _age(text: str, longest: timedelta) -> timedelta:
    """`text` as a period (InvalidArgument, 400, naming the problem), at most `longest`."""
    try:
        age = parse_age(text)
    except InvalidArgument as exc:
        raise InvalidArgument(f"since: {exc.message}") from None
    if age > longest:
        raise InvalidArgument(f"since: {text!r} is longer than the {longest.days} days kept here")
    return age


@router.get("/deployments/{name}/traffic", response_model=TrafficOut)
def deployment_traffic(
    name: str,
    since: Age = "1h",
    step: Annotated[int, Query(ge=1, le=MAX_STEP_S, description="Bucket width, seconds.")] = 60,
    caller: Caller = READ,
) -> TrafficOut:
    """Requests, errors, error rate and latency percentiles per model version and time bucket
    over the last `since`, as the data planes recorded them."""
    caller.deployments.get(name)  # NotFound (404) for an unknown deployment
    age = _age(since, MAX_TRAFFIC_AGE)
    return TrafficOut.of(traffic(caller.registry.database, name, since=age, step_s=step))


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    subject: Annotated[
        list[str] | None, Query(description="Only alerts about these models or deployments.")
    ] = None,
    state: Annotated[Literal["open", "all"], Query(description="open: still firing.")] = "all",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    caller: Caller = READ,
) -> list[AlertOut]:
    """The alert history, newest first. `state=open` gives, for each rule and subject whose
    latest transition is firing, that transition."""
    subjects = _subjects(subject)
    history = AlertHistory(caller.registry.database)
    if state == "all":
        found = [a for s in subjects for a in history.list(subject=s, limit=limit)]
    else:
        found = _open(a for s in subjects for a in history.list(subject=s, limit=MAX_LIST))
    found.sort(key=lambda a: a.at, reverse=True)
    return [AlertOut.of(a) for a in found[:limit]]


def _subjects(given: list[str] | None) -> list[str | None]:
    if not given:
        return [None]
    if len(given) > MAX_SUBJECTS:
        raise InvalidArgument(f"subject: at most {MAX_SUBJECTS} subjects, got {len(given)}")
    # Subjects are model or deployment names: anything else cannot match.
    return list(dict.fromkeys(check_name(text, "subject") for text in given))


def _open(alerts: Iterable[Alert]) -> list[Alert]:
    latest: dict[tuple[str, str], Alert] = {}
    for alert in sorted(alerts, key=lambda a: a.at, reverse=True):
        latest.setdefault((alert.subject, alert.rule), alert)
    return [a for a in latest.values() if a.state == FIRING]


@router.get("/models/{name}/drift", response_model=DriftOut)
def model_drift(
    request: Request,
    name: str,
    since: Age = "24h",
    version: Annotated[int | None, Query(ge=1, description="Default: the latest.")] = None,
    deployment: Annotated[
        str | None, Query(description="Only predictions served through this deployment.")
    ] = None,
    caller: Caller = READ,
) -> DriftOut:
    """Drift of the predictions `version` served over the last `since` (from the prediction log
    under SHIPYARD_HOME) against the reference data registered with it: per feature the test,
    its p-values and both histograms on the same bins, over every logged request of the version
    in the window. 412 when the version has no reference data or served no logged prediction in
    the window."""
    age = _age(since, MAX_DRIFT_AGE)
    if deployment is not None:
        check_name(deployment, "deployment name")
    chosen = _version(caller.registry, name, version)
    home = services(request).options.home
    if home is None:
        raise Unavailable("this server does not know where the prediction log is (no home)")
    cache, key = _drift_cache(request), (name, chosen.version, deployment, age)
    if (cached := cache.get(key)) is not None:
        return cached
    reference = _reference(caller.registry, chosen)
    until = datetime.now(UTC)
    try:
        computed = _drift(
            home, reference, chosen, since=until - age, until=until, deployment=deployment,
            database=caller.registry.database,
        )  # fmt: skip
    except NoLiveRows:
        through = f" through {deployment}" if deployment else ""
        raise FailedPrecondition(
            f"no logged predictions of {chosen.ref}{through} in the last {since}"
        ) from None
    view = DriftOut.of(
        computed, model=name, version=chosen.version, since=until - age, until=until,
        deployment=deployment,
    )  # fmt: skip
    cache.put(key, view)
    return view


def _version(registry: Registry, name: str, version: int | None) -> ModelVersion:
    if version is None:
        return registry.resolve(ModelRef(name))
    return registry.get_version(name, version)


def _reference(registry: Registry, version: ModelVersion) -> pd.DataFrame:
    frame = load_reference(registry, version)
    if frame is None:
        raise FailedPrecondition(
            f"no reference data registered for {version.ref}: register the version with "
            "reference_data to track its drift"
        )
    return frame


def _drift(
    home: Path,
    reference: pd.DataFrame,
    version: ModelVersion,
    *,
    since: datetime,
    until: datetime,
    deployment: str | None,
    database: Database,
) -> DriftView:
    def pages() -> Iterable[pd.DataFrame]:
        return iter_events(
            home, model=version.name, version=version.version, deployment=deployment,
            since=since, until=until, database=database,
        )  # fmt: skip

    return drift_view_of(reference, pages)
