"""Retention in the control plane, on SQLite and PostgreSQL: one housekeeping tick deletes what
is older than the period from the Parquet log, the table sink, the rollout statistics and the
load reports, keeps everything newer, and goes on when one store fails."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from eventlog_support import event
from pydantic import ValidationError
from rollout_rows import Batch, stats_row
from sqlalchemy import func, insert, select, text

from shipyard.app.control import ControlSettings
from shipyard.app.housekeeping import Housekeeping
from shipyard.monitoring.eventlog import ParquetSink, TableSink, read_events
from shipyard.registry.service import Registry
from shipyard.storage.deployments_table import RouteStatsRow
from shipyard.storage.load_failures_table import LoadFailureRow
from shipyard.storage.tables import utcnow

RETENTION = timedelta(days=7)


def _fill(registry: Registry, home: Path) -> None:
    """Two of everything: one 8 days old, one fresh."""
    old = timedelta(days=8)
    events = [event(0, age=old), event(1)]
    sink = ParquetSink(home)
    sink.write(events)
    sink.close()
    TableSink(registry.database).write(events)
    batch = Batch()
    batch.stats += [stats_row(1, at=utcnow() - old), stats_row(1)]
    batch.labelled("old", 1, [1], 1, at=utcnow() - old)
    batch.labelled("new", 1, [1], 1)
    batch.write(registry.database)
    with registry.database.write() as session:
        session.execute(
            insert(LoadFailureRow),
            [
                {"deployment": "d", "revision": r, "plane": "h:1", "reason": "x",
                 "versions": {"m:1": "x"}, "at": at}
                for r, at in ((1, utcnow() - old), (2, utcnow()))
            ],
        )  # fmt: skip


def _count(registry: Registry, table: type[RouteStatsRow] | type[LoadFailureRow]) -> int:
    with registry.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_a_tick_removes_only_what_is_older_than_the_retention(
    registry: Registry, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _fill(registry, home)
    keeper = Housekeeping(registry, home, RETENTION)

    swept = keeper.tick()

    assert swept.failed == {}
    assert swept.removed == {
        "log.parquet": 1, "log.table": 1, "rollouts.route_stats": 1,
        "rollouts.predictions": 1, "rollouts.feedback": 1, "rollouts.load_failures": 1,
    }  # fmt: skip
    assert list(read_events(home, model="fraud")["request_id"]) == ["req-1"]
    assert _count(registry, RouteStatsRow) == 1 and _count(registry, LoadFailureRow) == 1
    assert set(keeper.tick().removed.values()) == {0}  # nothing left to remove


def test_a_failing_store_does_not_stop_the_others(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _fill(registry, home)
    with registry.database.write() as session:
        session.execute(text("DROP TABLE prediction_events"))

    swept = Housekeeping(registry, home, RETENTION).tick()

    assert set(swept.failed) == {"log.table"}
    assert swept.removed["log.parquet"] == 1 and swept.removed["rollouts.route_stats"] == 1
    assert list(read_events(home, model="fraud")["request_id"]) == ["req-1"]


def test_failing_rollout_tables_do_not_stop_the_log_sweep(
    registry: Registry, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _fill(registry, home)
    with registry.database.write() as session:
        session.execute(text("DROP TABLE route_stats"))

    swept = Housekeeping(registry, home, RETENTION).tick()

    assert set(swept.failed) == {"rollouts.statistics"}
    assert "route_stats" in swept.failed["rollouts.statistics"]
    assert swept.removed["log.parquet"] == 1 and swept.removed["log.table"] == 1
    assert swept.removed["rollouts.load_failures"] == 1
    assert list(read_events(home, model="fraud")["request_id"]) == ["req-1"]
    assert _count(registry, LoadFailureRow) == 1


@pytest.mark.parametrize(
    ("given", "period"),
    [("30d", timedelta(days=30)), ("2w", timedelta(weeks=2)), (" Forever ", None)],
)
def test_retention_settings(given: str, period: timedelta | None) -> None:
    assert ControlSettings.model_validate({"retention": given}).retention == period


@pytest.mark.parametrize(
    ("given", "message"),
    [("12h", "shorter than a day"), ("soon", "cannot read 'soon' as a period"), ("0d", "positive")],
)
def test_bad_retention_is_refused(given: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ControlSettings.model_validate({"retention": given})
