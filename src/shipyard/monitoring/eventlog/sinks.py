"""Sinks named the way operators configure them: `parquet`, `table`, `redis://…`, `nats://…`.

A broker URL may carry `?stream=NAME` to pick the Redis stream or the JetStream stream (the
defaults are the sinks' own); the parameter is removed before the URL reaches the client.
Broker clients are imported only when their sink is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import Sink
from shipyard.monitoring.eventlog.parquet import DEFAULT_ROLL_S, ParquetSink
from shipyard.monitoring.eventlog.table import TableSink
from shipyard.storage.database import Database

SINK_HELP = (
    "parquet (files under HOME/events), table (the registry database), redis://… or nats://…"
)
BROKER_SCHEMES = ("redis", "rediss", "nats")


def open_sinks(
    specs: Sequence[str], *, home: Path, database: Database, roll_s: float = DEFAULT_ROLL_S
) -> list[Sink]:
    """The sinks `specs` name; Parquet parts roll (become readable) at the latest after
    `roll_s` seconds."""
    sinks: list[Sink] = []
    for index, spec in enumerate(specs):
        if spec == "parquet":
            sinks.append(ParquetSink(home, max_age_s=roll_s))
        elif spec == "table":
            sinks.append(TableSink(database))
        elif urlsplit(spec).scheme in BROKER_SCHEMES:
            sinks.append(_broker(spec, index))
        else:
            raise InvalidArgument(f"unknown prediction log sink {spec[:200]!r}: use {SINK_HELP}")
    return sinks


def _broker(spec: str, index: int) -> Sink:
    parts = urlsplit(spec)
    query = parse_qsl(parts.query)
    stream = next((value for key, value in query if key == "stream"), None)
    rest = urlencode([(key, value) for key, value in query if key != "stream"])
    url = urlunsplit(parts._replace(query=rest))
    if parts.scheme == "nats":
        from shipyard.monitoring.eventlog.nats_stream import DEFAULT_STREAM, NatsStreamSink

        return NatsStreamSink(url, stream=stream or DEFAULT_STREAM, name=f"nats-{index}")
    from shipyard.monitoring.eventlog.redis_stream import DEFAULT_STREAM as REDIS_STREAM
    from shipyard.monitoring.eventlog.redis_stream import RedisStreamSink

    return RedisStreamSink(url, stream=stream or REDIS_STREAM, name=f"redis-{index}")
