"""Recorder: what one data plane saw per variant, flushed to the database in the background.

The request path only updates memory under a short lock: one VariantWindow per (deployment,
revision, model, version, role) and a bounded list of predictions waiting to be logged. A
thread swaps them out every `flush_interval_s` and writes one `route_stats` row per key and at
most `max_predictions_per_flush` `predictions` rows; what does not fit is dropped and counted,
so a high request rate cannot overload the database. A failing database is logged and counted,
the statistics are kept for the next flush, and the data plane keeps serving.

A prediction's business key (the deployment's feedback key input) is stored as the keyed
digest feedback by key looks for, computed on the flush thread, never on the request path.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Insert

from shipyard.monitoring.feedback import key_digest
from shipyard.rollouts.stats import MAX_PREDICTIONS, VariantWindow, bucket_of
from shipyard.serving.routing import Outcome, Route, Target
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import PredictionRow, RouteStatsRow
from shipyard.storage.tables import utcnow

logger = logging.getLogger(__name__)

# (deployment, revision, model, version, role)
Key = tuple[str, int, str, int, str]
MAX_KEYS = 1024  # variants with traffic between two flushes; more is a bug, not load


def plane_id() -> str:
    """This data plane process: hostname:pid (unique among the planes sharing a database)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def _key(route: Route, target: Target) -> Key:
    return (route.deployment, route.revision, target.model, target.version, target.role)


@dataclass(slots=True)
class _Window:
    stats: VariantWindow = field(default_factory=VariantWindow)
    seen: int = 0  # numeric predictions offered to the reservoir

    def sample(self, value: float) -> None:
        """Reservoir sampling: every prediction has the same chance to be kept."""
        self.seen += 1
        kept = self.stats.predictions
        if len(kept) < MAX_PREDICTIONS:
            kept.append(value)
        else:
            slot = random.randrange(self.seen)
            if slot < MAX_PREDICTIONS:
                kept[slot] = value


@dataclass(frozen=True, slots=True)
class _Prediction:
    request_id: str
    route: Route
    at: datetime
    output: Any
    key: str | None


class Recorder:
    """Accumulates outcomes in memory; `start()` flushes them from a background thread."""

    def __init__(
        self,
        database: Database,
        *,
        plane: str | None = None,
        flush_interval_s: float = 1.0,
        max_predictions_per_flush: int = 1000,
        max_pending_predictions: int = 10_000,
        log_predictions: bool = True,
        hash_key: bytes | None = None,
    ) -> None:
        self._database = database
        self._hash_key = hash_key  # for business keys; None stores none
        self.plane = (plane or plane_id())[:64]
        self._interval = flush_interval_s
        self._per_flush = max_predictions_per_flush
        self._max_pending = max_pending_predictions
        self._log_predictions = log_predictions
        self._lock = threading.Lock()
        self._windows: dict[Key, _Window] = {}
        self._pending: list[_Prediction] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counters (read by tests and logs; only the flush thread and record() write them).
        self.dropped_predictions = 0
        self.dropped_keys = 0
        self.flush_failures = 0
        self.stats_rows = 0
        self.prediction_rows = 0

    # -- the request path --------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        route = outcome.route
        with self._lock:
            window = self._window(_key(route, route.target))
            if window is None:
                return
            stats = window.stats
            stats.requests += 1
            stats.latency[bucket_of(outcome.seconds)] += 1
            if not outcome.ok:
                stats.errors += 1
                return
            if outcome.prediction is not None:
                window.sample(outcome.prediction)
            if self._log_predictions:
                if len(self._pending) >= self._max_pending:
                    self.dropped_predictions += 1
                else:
                    self._pending.append(
                        _Prediction(
                            outcome.request_id, route, utcnow(), outcome.output, outcome.key
                        )
                    )

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None:
        """A shadow copy's outcome; counted against the shadow variant."""
        if route.shadow is None:
            return
        with self._lock:
            window = self._window(_key(route, route.shadow))
            if window is None:
                return
            stats = window.stats
            stats.requests += 1
            stats.latency[bucket_of(seconds)] += 1
            stats.shadow_total += 1
            if not ok:
                stats.errors += 1
            elif agree:
                stats.shadow_agree += 1

    def _window(self, key: Key) -> _Window | None:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= MAX_KEYS:
                self.dropped_keys += 1
                return None
            window = self._windows[key] = _Window()
        return window

    # -- the background flush ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="route-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and write what is left (one last flush)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        """Write what was recorded since the previous flush. Never raises."""
        with self._lock:
            windows, self._windows = self._windows, {}
            pending = self._pending[: self._per_flush]
            dropped = len(self._pending) - len(pending)
            self._pending = []
            self.dropped_predictions += dropped
        if not windows and not pending:
            return
        try:
            self._write(windows, pending)
        except Exception as exc:
            self.flush_failures += 1
            log = logger.warning if self.flush_failures == 1 else logger.debug
            log("route statistics not written (%s); kept for the next flush", exc)
            with self._lock:
                self._merge_back(windows)
                self.dropped_predictions += len(pending)
            return
        self.stats_rows += len(windows)
        self.prediction_rows += len(pending)

    def _merge_back(self, windows: dict[Key, _Window]) -> None:
        for key, old in windows.items():
            window = self._window(key)
            if window is not None:
                predictions = old.stats.predictions
                old.stats.predictions = []
                window.stats.add(old.stats)
                for value in predictions:
                    window.sample(value)

    def _write(self, windows: dict[Key, _Window], pending: list[_Prediction]) -> None:
        at = utcnow()
        with self._database.write() as session:
            for (deployment, revision, model, version, role), window in windows.items():
                stats = window.stats
                session.add(
                    RouteStatsRow(
                        deployment=deployment,
                        revision=revision,
                        model=model,
                        version=version,
                        role=role,
                        plane=self.plane,
                        at=at,
                        requests=stats.requests,
                        errors=stats.errors,
                        latency=stats.latency,
                        predictions=stats.predictions,
                        shadow_total=stats.shadow_total,
                        shadow_agree=stats.shadow_agree,
                    )
                )
            if pending:
                rows = _prediction_rows(pending, self._hash_key)
                session.execute(self._insert_ignoring_duplicates(), rows)

    def _insert_ignoring_duplicates(self) -> Insert:
        # A request id given twice by a caller keeps its first prediction.
        return self._database.insert_ignoring(PredictionRow, ["request_id"])


def _prediction_rows(pending: list[_Prediction], hash_key: bytes | None) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for item in pending:  # one statement cannot hold the same key twice on PostgreSQL
        rows.setdefault(
            item.request_id,
            {
                "request_id": item.request_id,
                "deployment": item.route.deployment,
                "revision": item.route.revision,
                "model": item.route.target.model,
                "version": item.route.target.version,
                "at": item.at,
                "output": item.output,
                "key": (
                    key_digest(hash_key, item.key)
                    if item.key is not None and hash_key is not None
                    else None
                ),
            },
        )
    return list(rows.values())
