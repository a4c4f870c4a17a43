"""Rows of the rollout tables (route statistics, observed predictions, feedback) as a data
plane's flush would write them; shared by the observation and housekeeping tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from shipyard.rollouts.stats import BUCKETS
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow, RouteStatsRow
from shipyard.storage.tables import utcnow


def stats_row(version: int, **values: Any) -> dict[str, Any]:
    latency = [0] * BUCKETS
    latency[10] = values.get("requests", 10)
    row = {
        "deployment": "d", "revision": 2, "model": "m", "version": version, "role": "primary",
        "plane": "p:1", "at": utcnow(), "requests": 10, "errors": 1, "latency": latency,
        "predictions": [0.5], "shadow_total": 0, "shadow_agree": 0,
    }  # fmt: skip
    return {**row, **values}


class Batch:
    """Rows to write in one transaction, as a data plane's flush would."""

    def __init__(self) -> None:
        self.stats: list[dict[str, Any]] = []
        self.predictions: list[dict[str, Any]] = []
        self.feedback: list[dict[str, Any]] = []

    def labelled(
        self, request_id: str, version: int, output: Any, value: Any, **values: Any
    ) -> None:
        self.predictions.append(
            {"request_id": request_id, "deployment": "d", "revision": 2, "model": "m",
             "version": version, "at": utcnow(), "output": output, **values}
        )  # fmt: skip
        at = values.get("at", utcnow())
        self.feedback.append({"request_id": request_id, "value": value, "at": at, "actor": "t"})

    def write(self, database: Database) -> None:
        with database.write() as session:
            for table, rows in (
                (RouteStatsRow, self.stats),
                (PredictionRow, self.predictions),
                (FeedbackRow, self.feedback),
            ):
                if rows:
                    session.execute(insert(table), rows)
