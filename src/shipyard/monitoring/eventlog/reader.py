"""Query the Parquet prediction log in place with DuckDB.

`read_events` returns one row per predicted row (a request of n rows gives n rows, sharing
the event's fields), inputs and outputs as scalar columns `input.<name>` / `output.<name>`;
`explode=False` keeps one row per event with list cells. Parts written at different times
may have different columns: they are unioned by name, a missing column reads as NULL.

Given the registry's `database`, the `prediction_events` table (the `table` sink) is read too:
data planes on other machines (replicas, pods whose HOME is ephemeral) log there, and the
control plane judges their predictions with its own. An event in both is read once.

`iter_events` pages through a window of any size in bounded memory: chunks of at most `chunk`
events, newest first, each event exactly once (a keyset on (at, event_id), so events sharing a
timestamp are neither lost nor repeated at a page boundary).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.eventlog.columns import (
    BASE_SCHEMA,
    INPUT_PREFIX,
    OUTPUT_PREFIX,
    to_table,
)
from shipyard.monitoring.eventlog.parquet import parts
from shipyard.monitoring.eventlog.table import TableSink
from shipyard.storage.database import Database

TABLE_VIEW = "logged_table"
CHUNK_EVENTS = 50_000  # events per page of iter_events: ~100 MB of rows at 50 features

# Where a page ended: the (at, event_id) of its last event, in (at DESC, event_id) order.
Cursor = tuple[datetime, str]


def read_events(
    home: Path,
    *,
    model: str | None = None,
    deployment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    explode: bool = True,
    database: Database | None = None,
    version: int | None = None,
    after: Cursor | None = None,
) -> pd.DataFrame:
    """Events with since <= at < until, newest first, at most `limit` events; from the
    Parquet files under `home`, and from the table in `database` if given. `after` starts
    past the event a previous page ended with."""
    for what, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidArgument(f"{what} must be timezone-aware")
    if limit is not None and limit < 1:
        raise InvalidArgument(f"limit must be at least 1, got {limit}")
    files = [str(p) for p in parts(home, model)]
    table = None
    if database is not None:
        found = TableSink(database).events(
            model=model,
            deployment=deployment,
            since=since,
            until=until,
            limit=limit,
            version=version,
            after=after,
        )
        table = to_table(found) if found else None
    if not files and table is None:
        return pd.DataFrame({name: [] for name in BASE_SCHEMA.names})
    where, params = _filters(model, deployment, version, since, until, after)
    # Only quoted column names and a validated int are formatted in; values are parameters.
    sources = []
    if files:
        sources.append(
            "SELECT * FROM read_parquet(?, union_by_name = true, hive_partitioning = false)"
        )
    if table is not None:
        sources.append(f"SELECT * FROM {TABLE_VIEW}")  # noqa: S608
    unioned = " UNION ALL BY NAME ".join(sources)
    once = "QUALIFY row_number() OVER (PARTITION BY event_id) = 1" if len(sources) > 1 else ""
    bound = f" LIMIT {int(limit)}" if limit is not None else ""
    inner = (
        f"SELECT * FROM ({unioned}) WHERE {where} {once} "  # noqa: S608
        f'ORDER BY "at" DESC, event_id{bound}'
    )
    arguments = ([files] if files else []) + params  # in the order of the placeholders
    import duckdb  # here: half a second to import, and only readers need it

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        if table is not None:
            con.register(TABLE_VIEW, table)
        probe = con.execute(f"SELECT * FROM ({inner}) LIMIT 0", arguments)  # noqa: S608
        names = [column[0] for column in probe.description or ()]
        payload = [n for n in names if n.startswith((INPUT_PREFIX, OUTPUT_PREFIX))]
        base = ", ".join(_quote(n) for n in names if n not in payload)
        if explode and payload:
            # Zipped UNNESTs (shorter lists padded with NULL) plus the row's index in its event.
            unnested = ", ".join(f"UNNEST({_quote(n)}) AS {_quote(n)}" for n in payload)
            longest = ", ".join(f"coalesce(len({_quote(n)}), 0)" for n in payload)
            columns = f"{base}, UNNEST(range(greatest({longest}, 0))) AS row, {unnested}"
            query = f'SELECT {columns} FROM ({inner}) ORDER BY "at" DESC, event_id, row'  # noqa: S608
        else:
            query = inner
        frame: pd.DataFrame = con.execute(query, arguments).df()
    return frame


def iter_events(
    home: Path,
    *,
    model: str | None = None,
    deployment: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    database: Database | None = None,
    chunk: int = CHUNK_EVENTS,
) -> Iterator[pd.DataFrame]:
    """The events `read_events` would return (exploded), in pages of at most `chunk` events."""
    after: Cursor | None = None
    while True:
        page = read_events(
            home,
            model=model,
            deployment=deployment,
            version=version,
            since=since,
            until=until,
            limit=chunk,
            database=database,
            after=after,
        )
        if len(page) == 0:
            return
        yield page
        last = page.iloc[-1]
        after = (pd.Timestamp(last["at"]).to_pydatetime(), str(last["event_id"]))
        if page["event_id"].nunique() < chunk:
            return  # a short page is the last one


def _filters(
    model: str | None,
    deployment: str | None,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
    after: Cursor | None,
) -> tuple[str, list[Any]]:
    clauses = ["TRUE"]
    params: list[Any] = []
    for clause, value in (
        ("model = ?", model),
        ("deployment = ?", deployment),
        ("version = ?", version),
        ('"at" >= ?', since),
        ('"at" < ?', until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if after is not None:
        clauses.append('("at" < ? OR ("at" = ? AND event_id > ?))')
        params += [after[0], after[0], after[1]]
    return " AND ".join(clauses), params


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
