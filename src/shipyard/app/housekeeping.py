"""Retention in the control plane: what is older than the retention period is deleted, every
`interval` — the prediction log (the Parquet files under SHIPYARD_HOME and the table sink in the
registry's database), the rollout statistics and observed predictions with their orphaned
feedback, and stale load reports.

Without it those grow forever, and the prediction log keeps personal data longer than the
operator promised. Streams (Redis, NATS) have their own retention (`shipyard logs prune
--redis/--nats`, or the broker's limits). Each store is pruned on its own: one that fails is
logged and the others are still pruned; the next tick tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from shipyard.app.ticker import Ticker
from shipyard.core.errors import ShipyardError
from shipyard.monitoring.eventlog import ParquetStore, TableSink, prune
from shipyard.monitoring.eventlog.retention import Store
from shipyard.registry.service import Registry
from shipyard.rollouts import load_reports, observations

log = logging.getLogger("shipyard.housekeeping")


@dataclass
class Swept:
    """Rows or events removed per store, and the stores that failed (name -> reason)."""

    removed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Housekeeping:
    def __init__(self, registry: Registry, home: Path, retention: timedelta) -> None:
        self.registry = registry
        self.home = home
        self.retention = retention
        self._ticker = Ticker("housekeeping", self.tick, log)

    def tick(self, now: datetime | None = None) -> Swept:
        now = now or datetime.now(UTC)
        before = now - self.retention
        database = self.registry.database
        stores: list[Store] = [ParquetStore(self.home), TableSink(database)]
        removal = prune(stores, self.retention, now=now)
        swept = Swept({f"log.{k}": v for k, v in removal.removed.items()})
        swept.failed.update({f"log.{k}": v for k, v in removal.failed.items()})
        rollout_tables: dict[str, Callable[[], dict[str, int]]] = {
            "rollouts.statistics": lambda: {
                f"rollouts.{table}": n for table, n in observations.prune(database, before).items()
            },
            "rollouts.load_failures": lambda: {
                "rollouts.load_failures": load_reports.prune(database, before)
            },
        }
        for name, prune_rows in rollout_tables.items():
            try:
                swept.removed.update(prune_rows())
            except (ShipyardError, SQLAlchemyError) as exc:  # Unavailable, a refused statement
                log.warning("housekeeping: %s not pruned: %s", name, exc)
                swept.failed[name] = f"{type(exc).__name__}: {exc}"
        if any(swept.removed.values()):
            shown = ", ".join(f"{k} {v}" for k, v in swept.removed.items() if v)
            log.info("housekeeping: removed what is older than %s: %s", self.retention, shown)
        return swept

    def start(self, interval_s: float) -> None:
        self._ticker.start(interval_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self._ticker.stop(timeout_s)
