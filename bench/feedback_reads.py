"""The monitoring loop's largest feedback read: `FeedbackStore.values` for the request ids of a
window, on SQLite and PostgreSQL, beside the `IN (...)` list read it replaced on PostgreSQL.

For each backend a fresh database holds feedback for half of N request ids; the read asks for
all N (batches of 10,000, as the loop does). "shipyard" is `FeedbackStore.values`; "IN lists"
is the same batches read with `request_id IN (...)`, one bound parameter per id (shipyard's
read before it passed PostgreSQL one array). Rounds alternate; the median is shown. Bounded: N
ids, a few rounds, 127.0.0.1 only; the PostgreSQL database is dropped at the end.

    .venv/bin/python bench/feedback_reads.py [--ids 200000] [--rounds 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import insert, select

from shipyard.monitoring.feedback import MAX_BATCH, FeedbackStore
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _in_lists(database: Database, ids: list[str]) -> dict[str, object]:
    found: dict[str, object] = {}
    with database.read() as session:
        for start in range(0, len(ids), MAX_BATCH):
            batch = ids[start : start + MAX_BATCH]
            query = select(FeedbackRow.request_id, FeedbackRow.value)
            found.update(session.execute(query.where(FeedbackRow.request_id.in_(batch))).all())
    return found


def _median_ms(read: Callable[[], Mapping[str, object]], rounds: int, expected: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        found = read()
        times.append((time.perf_counter() - started) * 1000)
        assert len(found) == expected, (len(found), expected)
    return statistics.median(times)


def _measure(url: str, n: int, rounds: int) -> list[tuple[str, float]]:
    with Database(url) as database:
        now = datetime.now(UTC)
        labelled = [
            {"request_id": f"r{i}", "value": i % 2, "at": now, "actor": "bench"}
            for i in range(0, n, 2)
        ]
        with database.write() as session:
            session.execute(insert(FeedbackRow), labelled)
        ids = [f"r{i}" for i in range(n)]
        store = FeedbackStore(database)
        rows = []
        for _ in range(rounds):  # alternate the two reads
            rows.append(("shipyard", _median_ms(lambda: store.values(ids), 1, len(labelled))))
            rows.append(
                ("IN lists", _median_ms(lambda: _in_lists(database, ids), 1, len(labelled)))
            )
        return [
            (path, statistics.median(ms for p, ms in rows if p == path))
            for path in ("shipyard", "IN lists")
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    results: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, ms in _measure(f"sqlite:///{tmp}/bench.db", args.ids, args.rounds):
            results.append(("sqlite", path, ms))
    name = f"bench_feedback_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        for path, ms in _measure(url, args.ids, args.rounds):
            results.append(("postgresql", path, ms))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    load = os.getloadavg()[0]
    lines = [
        f"bench/feedback_reads.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"1-min load average after: {load:.2f}; feedback of {args.ids:,} request ids "
        f"(half labelled), median of {args.rounds} rounds",
        "",
        "| backend | read | median ms | vs shipyard |",
        "|---|---|---:|---:|",
    ]
    for backend in ("sqlite", "postgresql"):
        ours = next(ms for b, p, ms in results if b == backend and p == "shipyard")
        for b, path, ms in results:
            if b == backend:
                lines.append(f"| {backend} | {path} | {ms:.0f} | {ms / ours:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
