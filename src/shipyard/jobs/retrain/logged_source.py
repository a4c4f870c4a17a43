"""A `logged` training source: the model's logged predictions joined with their feedback.

Features are the logged inputs (`input.<name>` read back as `<name>`); the label is the
feedback value given for the prediction's request id. Feedback is one value per request id,
so a request that predicted several rows has no per-row label: such requests are dropped
(counted as `multi_row`) rather than giving one value to rows it may not describe. A request id
logged by several events (a shadow copy, a retry) counts once, with its newest event's inputs.
Rows are returned oldest first, so the holdout (the last rows) is the most recent traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.jobs.retrain.config import LoggedSource
from shipyard.monitoring.eventlog import parse_age, read_events
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX
from shipyard.monitoring.feedback import FeedbackStore
from shipyard.storage.database import Database


@dataclass(frozen=True, slots=True)
class LoggedData:
    data: pd.DataFrame
    report: dict[str, Any]  # counts of what was kept and dropped, for the run record


def read_logged(
    source: LoggedSource,
    *,
    model: str,
    label: str,
    home: Path | None,
    database: Database,
    now: datetime | None = None,
) -> LoggedData:
    if home is None:
        raise InvalidArgument(
            "a logged source needs the shipyard home (SHIPYARD_HOME) the predictions are "
            "logged under; this runner was started without one"
        )
    since = (now or datetime.now(UTC)) - parse_age(source.logged.since)
    bound = source.logged.max_events
    events = read_events(
        home,
        model=model,
        deployment=source.logged.deployment,
        since=since,
        limit=bound + 1,
        database=database,  # what replicas on other machines logged to the table
    )
    if events["event_id"].nunique() > bound:
        raise InvalidArgument(
            f"more than max_events={bound} predictions of {model} were logged in the last "
            f"{source.logged.since}; shorten `since` or raise max_events"
        )
    inputs = [c for c in events.columns if c.startswith(INPUT_PREFIX)]
    features = {c: c.removeprefix(INPUT_PREFIX) for c in inputs}
    if label in features.values():
        raise InvalidArgument(
            f"the logged inputs of {model} have a column named like the label {label!r}"
        )
    rows = _newest_event_per_request(events)
    sizes = rows.groupby("request_id")["request_id"].transform("size")
    labels = FeedbackStore(database).values(rows["request_id"].dropna().unique().tolist())
    has_feedback = rows["request_id"].isin(labels.keys())
    multi_row = has_feedback & (sizes > 1)
    kept = rows[has_feedback & ~multi_row]
    data = kept[inputs].rename(columns=features).reset_index(drop=True)
    # As given (JSON bool, number or string), typed by what the values are.
    values = [labels[request_id] for request_id in kept["request_id"]]
    data[label] = pd.Series(values, dtype=object).infer_objects()
    report = {
        "kind": "logged",
        "since": source.logged.since,
        "deployment": source.logged.deployment,
        "max_events": bound,
        "logged_rows": len(rows),
        "without_feedback": int((~has_feedback).sum()),
        "multi_row": int(multi_row.sum()),
        "rows": len(data),
    }
    return LoggedData(data, report)


def _newest_event_per_request(events: pd.DataFrame) -> pd.DataFrame:
    """The rows of each request id's newest event, oldest request first (stable order)."""
    if events.empty:
        return events
    # read_events orders newest first by (at, event_id), rows of an event in order.
    newest = events.groupby("request_id")["event_id"].transform("first")
    rows = events[events["request_id"].isna() | (events["event_id"] == newest)]
    keys = [key for key in ("at", "event_id", "row") if key in rows.columns]
    return rows.sort_values(keys).reset_index(drop=True)
