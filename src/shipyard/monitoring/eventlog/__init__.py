"""The prediction log: a bounded, non-blocking logger, privacy scrubbing, sinks (Parquet,
database table, Redis Streams, NATS JetStream), a DuckDB reader, retention and erasure.

Redis and NATS sinks live in their own modules (`redis_stream`, `nats_stream`) and are not
imported here, so the default log needs neither client installed.
"""

from shipyard.monitoring.eventlog.logger import PredictionLogger
from shipyard.monitoring.eventlog.parquet import ParquetSink
from shipyard.monitoring.eventlog.parquet_store import ParquetStore
from shipyard.monitoring.eventlog.privacy import Privacy, digest, load_or_create_key
from shipyard.monitoring.eventlog.reader import iter_events, read_events
from shipyard.monitoring.eventlog.retention import Removal, erase, parse_age, prune
from shipyard.monitoring.eventlog.table import TableSink

__all__ = [
    "ParquetSink",
    "ParquetStore",
    "PredictionLogger",
    "Privacy",
    "Removal",
    "TableSink",
    "digest",
    "erase",
    "iter_events",
    "load_or_create_key",
    "parse_age",
    "prune",
    "read_events",
]
