"""`shipyard logs show | prune | erase`: read the prediction log, apply retention, erase a
subject's records (GDPR) from every store and say how many each removed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from shipyard.app.settings import Settings
from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json
from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.monitoring.eventlog import (
    ParquetStore,
    Removal,
    TableSink,
    erase,
    load_or_create_key,
    parse_age,
    prune,
    read_events,
)
from shipyard.monitoring.eventlog.privacy import parse_key
from shipyard.monitoring.eventlog.retention import Store
from shipyard.rollouts.observations import ObservedPredictions
from shipyard.storage.database import Database

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
RedisOption = Annotated[
    str | None, typer.Option("--redis", help="Also the Redis stream sink at this URL.")
]
RedisStreamOption = Annotated[str, typer.Option(help="Redis stream key of the sink.")]
NatsOption = Annotated[
    str | None, typer.Option("--nats", help="Also the NATS JetStream sink at this URL.")
]
NatsStreamOption = Annotated[str, typer.Option(help="JetStream stream of the sink.")]
MAX_SHOW = 10_000

logs_app = typer.Typer(help="Read, prune and erase the prediction log.", no_args_is_help=True)


def install(app: typer.Typer) -> None:
    app.add_typer(logs_app, name="logs")


def _moment(text: str) -> datetime:
    """An ISO time (UTC if no zone) or an age back from now ('1h', '7d')."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC) - parse_age(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _cells(row: pd.Series, prefix: str) -> str:
    parts = []
    for name, value in row.items():
        if str(name).startswith(prefix) and value is not None and not _missing(value):
            parts.append(f"{str(name).removeprefix(prefix)}={list(value)}")
    return " ".join(parts)


def _missing(value: Any) -> bool:
    return isinstance(value, float) and pd.isna(value)


def _events_table(model: str, frame: pd.DataFrame) -> Table:
    table = Table(title=f"prediction log of {model}")
    for column in ("at", "request", "deployment", "version", "ms", "inputs", "outputs"):
        table.add_column(column, no_wrap=column in ("at", "request"))
    for _, row in frame.iterrows():
        table.add_row(
            pd.Timestamp(row["at"]).strftime("%Y-%m-%d %H:%M:%S"),
            str(row["request_id"]),
            str(row["deployment"] or "-"),
            str(row["version"]),
            f"{row['latency_ms']:.2f}",
            _cells(row, "input.") or "(not sampled)",
            _cells(row, "output."),
        )
    return table


@logs_app.command("show")
@exits_by_kind
def logs_show(
    model: Annotated[str, typer.Argument(help="Model name.")],
    since: Annotated[
        str | None, typer.Option(help="An ISO time or an age back from now: 1h, 7d.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Newest events to show.")] = 20,
    json: JsonOption = False,
) -> None:
    """Print the newest events of MODEL from the Parquet log in SHIPYARD_HOME."""
    if not 1 <= limit <= MAX_SHOW:
        raise InvalidArgument(f"--limit must be between 1 and {MAX_SHOW}, got {limit}")
    start = _moment(since) if since is not None else None
    frame = read_events(Settings().home, model=model, since=start, limit=limit, explode=False)
    if json:
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        print_json([{k: _jsonable(v) for k, v in r.items()} for r in records])
    elif frame.empty:
        console.print(f"no events logged for {model}")
    else:
        console.print(_events_table(model, frame))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _stores(
    settings: Settings,
    database: Database,
    redis: str | None,
    redis_stream: str,
    nats: str | None,
    nats_stream: str,
) -> list[Store]:
    stores: list[Store] = [
        ParquetStore(settings.home),
        TableSink(database),
        ObservedPredictions(database),
    ]
    if redis is not None:
        from shipyard.monitoring.eventlog.redis_stream import RedisStreamSink

        stores.append(RedisStreamSink(redis, stream=redis_stream))
    if nats is not None:
        from shipyard.monitoring.eventlog.nats_stream import NatsStreamSink

        stores.append(NatsStreamSink(nats, stream=nats_stream))
    return stores


def _report(action: str, removal: Removal, json: bool) -> None:
    if json:
        print_json({"removed": removal.removed, "failed": removal.failed})
    else:
        for name, count in removal.removed.items():
            print(f"{name}: removed {count}")
        for name, reason in removal.failed.items():
            print(f"{name}: FAILED ({reason})")
        print(f"{action}: removed {removal.total} in total")
    if removal.failed:
        names = ", ".join(removal.failed)
        raise Unavailable(f"{action} incomplete: {names} failed; run it again")


def _close(stores: list[Store]) -> None:
    for store in stores:
        closer = getattr(store, "close", None)
        if closer is not None:
            closer()


@logs_app.command("prune")
@exits_by_kind
def logs_prune(
    older_than: Annotated[str, typer.Option(help="Retention period: 30d, 12h, 90min.")],
    redis: RedisOption = None,
    redis_stream: RedisStreamOption = "shipyard:prediction-events",
    nats: NatsOption = None,
    nats_stream: NatsStreamOption = "SHIPYARD_EVENTS",
    json: JsonOption = False,
) -> None:
    """Delete every logged event older than the period (Parquet, table, the deployments'
    recorded predictions with their feedback, streams)."""
    age = parse_age(older_than)
    settings = Settings()
    with Database(settings.resolved_database_url, timeout_s=settings.database_timeout_s) as db:
        stores = _stores(settings, db, redis, redis_stream, nats, nats_stream)
        try:
            removal = prune(stores, age)
        finally:
            _close(stores)
    _report("prune", removal, json)


@logs_app.command("erase")
@exits_by_kind
def logs_erase(
    key: Annotated[str, typer.Option(help="The subject's business key, e.g. a customer id.")],
    hash_key: Annotated[
        str | None,
        typer.Option(
            envvar="SHIPYARD_EVENT_HASH_KEY",
            help="Hex key the log was hashed with [the key in SHIPYARD_HOME/events].",
            show_default=False,
        ),
    ] = None,
    redis: RedisOption = None,
    redis_stream: RedisStreamOption = "shipyard:prediction-events",
    nats: NatsOption = None,
    nats_stream: NatsStreamOption = "SHIPYARD_EVENTS",
    json: JsonOption = False,
) -> None:
    """Erase every record of one subject from every store and print how many each removed.

    Stores: the Parquet log, the table sink, the predictions deployments recorded under the
    key (with their feedback), and the streams given."""
    settings = Settings()
    secret = parse_key(hash_key) if hash_key is not None else load_or_create_key(settings.home)
    with Database(settings.resolved_database_url, timeout_s=settings.database_timeout_s) as db:
        stores = _stores(settings, db, redis, redis_stream, nats, nats_stream)
        try:
            removal = erase(stores, key, secret)
        finally:
            _close(stores)
    _report("erase", removal, json)
