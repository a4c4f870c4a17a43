"""The data plane's watcher reporting a revision it cannot apply, on SQLite and PostgreSQL:
one row per (deployment, revision, plane) however often loading is retried, cleared once the
revision is applied, and a failing database that neither stops routing nor loses the report.

Timings are never asserted; bounded waits ("within 5 s") are liveness bounds only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sqlalchemy import select

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.core.refs import ModelRef
from shipyard.packaging.load import load_version
from shipyard.registry import service
from shipyard.rollouts.controller import Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.load_reports import LoadReports
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Rollouts
from shipyard.rollouts.router import Router
from shipyard.rollouts.watcher import Watcher
from shipyard.serving.host import ModelHost
from shipyard.serving.served import Loaded
from shipyard.storage.load_failures_table import LoadFailureRow

POLL = 0.05
LIVENESS = 5.0
WHY = "RuntimeError (details in the server log)"


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Registry(settings=settings) as registry:
        for version in (1, 2):
            rows = np.random.default_rng(version).normal(size=(50, 2)).astype(np.float32)
            model = LinearRegression().fit(rows, rows[:, 0] * version)
            registry.register(model, "scorer", sample_input=rows[:10])
        yield registry


class Loader:
    """Loads for real, except the versions in `broken`; counts the attempts per version."""

    def __init__(self) -> None:
        self.broken: set[int] = set()
        self.attempts: dict[int, int] = {}

    def __call__(self, store: service.Registry, ref: ModelRef) -> Loaded:
        assert ref.version is not None
        self.attempts[ref.version] = self.attempts.get(ref.version, 0) + 1
        if ref.version in self.broken:
            raise RuntimeError("/secret/artifact is corrupt")
        return load_version(store, ref)


class Counting(LoadReports):
    """LoadReports that counts its writes and can be made to fail like a database outage."""

    def __init__(self, store: service.Registry) -> None:
        super().__init__(store.database, "test:1")
        self.writes = 0
        self.down = False

    def failed(self, deployment: str, revision: int, versions: Mapping[str, str]) -> None:
        self._count()
        super().failed(deployment, revision, versions)

    def applied(self, deployment: str, revision: int) -> None:
        self._count()
        super().applied(deployment, revision)

    def _count(self) -> None:
        if self.down:
            raise ConnectionError("database unreachable")
        self.writes += 1


@asynccontextmanager
async def watching(store: service.Registry, loader: Loader) -> AsyncIterator[Watcher]:
    host = ModelHost(store, [], loader=loader, poll_interval_s=POLL, require_refs=False)
    watcher = Watcher(store, host, Router(None), poll_interval_s=POLL, plane="test:1")
    await host.start()
    await watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()
        await host.drain(LIVENESS)


def rows(store: service.Registry) -> list[tuple[str, int, str, str, dict[str, str]]]:
    with store.database.read() as session:
        return [
            (r.deployment, r.revision, r.plane, r.reason, dict(r.versions))
            for r in session.scalars(select(LoadFailureRow))
        ]


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while not check():
        assert time.monotonic() < deadline, f"not within {LIVENESS}s: {what}"
        await asyncio.sleep(0.02)


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


def test_a_failed_revision_is_reported_once_across_retries_and_cleared_once_applied(
    client: Registry,
) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")
    loader = Loader()
    loader.broken.add(2)

    async def main() -> None:
        async with watching(client.store, loader) as watcher:
            watcher.reports = counting = Counting(client.store)
            await asyncio.to_thread(
                deployments.deploy, "api", "scorer:2", strategy="canary", weight=10
            )
            await eventually(lambda: loader.attempts.get(2, 0) >= 4, "loading retried")
            assert watcher.applied["api"].number == 1  # still routing the previous revision
            assert rows(client.store) == [
                ("api", 2, "test:1", f"scorer:2: {WHY}", {"scorer:2": WHY})
            ]
            assert counting.writes == 1  # one report, not one per retry
            assert "secret" not in str(rows(client.store))
            loader.broken.clear()  # the artifact is fixed: the next retry applies revision 2
            await eventually(lambda: watcher.applied["api"].number == 2, "revision 2 applied")
            await eventually(lambda: rows(client.store) == [], "report cleared")
            assert counting.writes == 2
            # A later revision that loads at once writes nothing: there is nothing to clear.
            await asyncio.to_thread(deployments.deploy, "api", "scorer:1")
            await eventually(lambda: watcher.applied["api"].number == 3, "revision 3 applied")
            assert counting.writes == 2 and rows(client.store) == []

    run(main())


def test_a_failing_database_neither_stops_routing_nor_loses_the_report(
    client: Registry,
) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")
    loader = Loader()
    loader.broken.add(2)

    async def main() -> None:
        async with watching(client.store, loader) as watcher:
            watcher.reports = counting = Counting(client.store)
            counting.down = True
            await asyncio.to_thread(deployments.deploy, "api", "scorer:2")
            await eventually(lambda: loader.attempts.get(2, 0) >= 2, "loading retried")
            assert "revision 2 not applied" in watcher.failures["api"]
            assert watcher.applied["api"].number == 1 and rows(client.store) == []
            counting.down = False  # the next retry writes the report it could not write
            await eventually(lambda: len(rows(client.store)) == 1, "report written")
            assert rows(client.store)[0][:3] == ("api", 2, "test:1")
            assert counting.writes == 1

    run(main())


def test_a_canary_no_plane_can_load_is_rolled_back_at_once_and_the_report_cleared(
    client: Registry,
) -> None:
    deployments = Deployments(client.store)
    rollouts = Rollouts(deployments)
    deployments.deploy("api", "scorer:1")
    loader = Loader()
    loader.broken.add(2)
    policy = parse_policy({"steps": [10, 50, 100], "window_s": 3600, "min_requests": 100})

    async def main() -> None:
        async with watching(client.store, loader) as watcher:
            await asyncio.to_thread(
                deployments.deploy, "api", "scorer:2", strategy="canary", policy=policy
            )
            await eventually(lambda: len(rows(client.store)) == 1, "failure reported")
            # The window has an hour to go: only the report can end the rollout now.
            (decision,) = await Controller(rollouts).tick()
            reason = f"scorer:2 could not be loaded on 1 data plane: {WHY}"
            assert decision.outcome == "rollback" and decision.reason == reason
            history = await asyncio.to_thread(client.store.ledger, deployment="api")
            assert (history[-1].action, history[-1].reason) == ("rollout.rolled_back", reason)
            # The plane follows the rollback revision and withdraws its report.
            await eventually(lambda: watcher.applied["api"].number == 3, "rollback applied")
            await eventually(lambda: rows(client.store) == [], "report cleared")
            assert [v.ref for v in watcher.applied["api"].spec.variants] == ["scorer:1"]

    run(main())
