"""The data plane serving deployments, on SQLite and PostgreSQL: the watcher following revisions
(with a steady load and no failed request), failed loads, retiring versions, and the recorder's
statistics and prediction log, with each prediction's business key for feedback by key.

Timings are never asserted; bounded waits ("within 5 s") are liveness bounds only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sqlalchemy import func, select

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.core.errors import NotFound, Unavailable
from shipyard.core.refs import ModelRef
from shipyard.core.tensors import InferRequest, Tensor
from shipyard.monitoring.feedback import FeedbackStore, KeyedFeedback, key_digest
from shipyard.packaging.load import load_version
from shipyard.registry import service
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.recorder import Recorder
from shipyard.rollouts.router import Router
from shipyard.rollouts.spec import HeaderMatch, RevisionSpec, Strategy, Variant
from shipyard.rollouts.watcher import Watcher
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.host import ModelHost
from shipyard.serving.routing import Outcome, Route, Target
from shipyard.serving.served import Loaded, Loader
from shipyard.serving.types import ModelState
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow, RouteStatsRow

POLL = 0.05
LIVENESS = 5.0
X = np.array([[1.0, 0.0]], dtype=np.float32)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Registry(settings=settings) as registry:
        for version in (1, 2, 3):  # version N predicts N * x0: the answer names the version
            rows = np.random.default_rng(version).normal(size=(50, 2)).astype(np.float32)
            model = LinearRegression().fit(rows, rows[:, 0] * version)
            registry.register(model, "scorer", sample_input=rows[:10])
        yield registry


@dataclass
class Plane:
    data: DataPlane
    host: ModelHost
    router: Router
    watcher: Watcher
    recorder: Recorder


@asynccontextmanager
async def serving(
    store: service.Registry,
    loader: Loader = load_version,
    names: list[str] | None = None,
    *,
    feedback_key: str | None = None,
    hash_key: bytes | None = None,
) -> AsyncIterator[Plane]:
    host = ModelHost(store, [], loader=loader, poll_interval_s=POLL, require_refs=False)
    recorder = Recorder(store.database, plane="test:1", flush_interval_s=0.1, hash_key=hash_key)
    router = Router(recorder)
    watcher = Watcher(store, host, router, names=names, poll_interval_s=POLL)
    await host.start()
    await watcher.start()
    recorder.start()
    try:
        data = DataPlane(host, None, routing=router, feedback_key=feedback_key)
        yield Plane(data, host, router, watcher, recorder)
    finally:
        await watcher.stop()
        await host.drain(LIVENESS)
        recorder.stop()


def request(key: str | None = None, x: np.ndarray = X) -> tuple[InferRequest, Callable[..., Any]]:
    headers = {"x-shipyard-key": key} if key is not None else {}
    return InferRequest("api", (Tensor("x", "FP32", x.shape, x),)), headers.get


async def answer(plane: Plane, key: str | None = None, **headers: str) -> str:
    infer, lookup = request(key)
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    result = await plane.data.infer(infer, lambda n: extra.get(n) or lookup(n))
    return result.model_version


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while not check():
        assert time.monotonic() < deadline, f"not within {LIVENESS}s: {what}"
        await asyncio.sleep(0.02)


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


def test_revisions_are_followed_live_under_load_without_a_failed_request(
    client: Registry,
) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")
    # Ten changes; after each one the answers must show the new split.
    changes: list[tuple[Callable[[], object], set[str]]] = [
        (
            lambda: deployments.deploy("api", "scorer:2", strategy="canary", weight=50),
            {"scorer:1", "scorer:2"},
        ),
        (lambda: deployments.rollback("api"), {"scorer:1"}),
        (lambda: deployments.deploy("api", "scorer:3", strategy="bluegreen"), {"scorer:3"}),
        (lambda: deployments.deploy("api", "scorer:2", strategy="ab"), {"scorer:3", "scorer:2"}),
        (lambda: deployments.deploy("api", "scorer:1"), {"scorer:1"}),
        (lambda: deployments.deploy("api", "scorer:2", strategy="shadow"), {"scorer:1"}),
        (lambda: deployments.deploy("api", "scorer:2"), {"scorer:2"}),
        (lambda: deployments.rollback("api", to=1), {"scorer:1"}),
        (
            lambda: deployments.deploy("api", "scorer:3", strategy="canary", weight=30),
            {"scorer:1", "scorer:3"},
        ),
        (lambda: deployments.deploy("api", "scorer:3"), {"scorer:3"}),
    ]

    async def main() -> None:
        async with serving(client.store) as plane:
            assert plane.data.ready() and plane.data.model_ready("api")
            assert await answer(plane) == "scorer:1"
            failures: list[BaseException] = []
            answered = 0
            stop = asyncio.Event()

            async def load() -> None:  # steady load: bounded by the test's length
                nonlocal answered
                index = 0
                while not stop.is_set() and answered < 50_000:
                    try:
                        await answer(plane, f"user-{index % 300}")
                        answered += 1
                    except Exception as exc:
                        failures.append(exc)
                    index += 1
                    await asyncio.sleep(0)

            workers = [asyncio.create_task(load()) for _ in range(4)]
            for change, expected in changes:
                revision = await asyncio.to_thread(change)
                number = getattr(revision, "number", None)

                def routed(want: object = number) -> bool:
                    return plane.router.revisions().get("api") == want

                await eventually(routed, f"revision {number} routed")
                seen = {await answer(plane, f"k{i}") for i in range(200)}
                assert seen == expected, (number, seen)
            stop.set()
            await asyncio.gather(*workers)
            assert failures == [] and answered > 0
            # Only the last revision's version is still held.
            assert plane.host.pinned("scorer", 3) is not None
            await eventually(
                lambda: (
                    plane.host.pinned("scorer", 1) is None
                    and plane.host.pinned("scorer", 2) is None
                ),
                "old versions released",
            )

    run(main())


def test_a_version_that_fails_to_load_keeps_the_previous_revision_routing(
    client: Registry,
) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")

    def loader(store: service.Registry, ref: ModelRef) -> Loaded:
        if ref.version == 3:
            raise RuntimeError("/secret/path exploded")
        return load_version(store, ref)

    async def main() -> None:
        async with serving(client.store, loader) as plane:
            await asyncio.to_thread(deployments.deploy, "api", "scorer:3", strategy="bluegreen")
            await eventually(lambda: "api" in plane.watcher.failures, "failure recorded")
            assert (
                "revision 2 not applied (still routing revision 1)"
                in (plane.watcher.failures["api"])
            )
            assert "secret" not in plane.watcher.failures["api"]
            assert plane.router.revisions() == {"api": 1}
            assert {await answer(plane, f"k{i}") for i in range(20)} == {"scorer:1"}
            # A new deployment whose only version cannot load: known, unavailable, not ready.
            await asyncio.to_thread(deployments.deploy, "fresh", "scorer:3")
            await eventually(lambda: "fresh" in plane.watcher.failures, "fresh failed")
            fresh, lookup = request()
            with pytest.raises(Unavailable, match="'fresh' is not ready: .*not routed"):
                await plane.data.infer(InferRequest("fresh", fresh.inputs), lookup)
            assert not plane.data.model_ready("fresh") and plane.data.ready()
            index = {(e.name, e.version): e for e in plane.data.repository_index()}
            assert index[("fresh", "")].state is ModelState.UNAVAILABLE
            assert "not routed" in index[("fresh", "")].reason
            assert index[("api", "revision 1")].state is ModelState.READY
            assert "revision 2 not applied" in index[("api", "revision 1")].reason
            index = {(e.name, e.version): e for e in plane.data.repository_index()}
            assert index[("scorer", "3")].state is ModelState.UNAVAILABLE
            # A later good revision is applied and clears the failure.
            await asyncio.to_thread(deployments.deploy, "api", "scorer:2")
            await eventually(lambda: plane.router.revisions() == {"api": 3}, "revision 3")
            assert "api" not in plane.watcher.failures
            assert await answer(plane) == "scorer:2"

    run(main())


def test_header_matches_and_new_deployments_are_picked_up(client: Registry) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")

    async def main() -> None:
        async with serving(client.store) as plane:
            spec = RevisionSpec(
                Strategy.CANARY,
                (Variant("scorer", 1, 99), Variant("scorer", 2, 1)),
                matches=(HeaderMatch("x-tester", "yes", 1),),
            )
            await asyncio.to_thread(deployments.revise, "api", spec, action="deployment.revised")
            await asyncio.to_thread(deployments.deploy, "other", "scorer:3")
            await eventually(lambda: plane.router.names() == ("api", "other"), "both routed")
            assert {await answer(plane, f"k{i}", x_tester="yes") for i in range(50)} == {"scorer:2"}
            other, lookup = request()
            result = await plane.data.infer(InferRequest("other", other.inputs), lookup)
            assert result.model_version == "scorer:3"

    run(main())


def _rows(store: service.Registry, table: Any) -> list[Any]:
    with store.database.read() as session:
        rows = list(session.scalars(select(table)))
        session.expunge_all()  # detached but loaded: readable after the session ends
        return rows


def test_traffic_is_flushed_as_route_stats_and_predictions(client: Registry) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")
    deployments.deploy("api", "scorer:2", strategy="shadow")

    async def main() -> None:
        async with serving(client.store) as plane:
            ids = []
            for index in range(1, 31):
                infer, lookup = request(x=np.array([[float(index), 0.0]], dtype=np.float32))
                result = await plane.data.infer(infer, lookup)
                ids.append(result.id)
            await eventually(
                lambda: sum(r.shadow_total for r in _rows(client.store, RouteStatsRow)) == 30,
                "shadow copies flushed",
            )
            await eventually(
                lambda: len(_rows(client.store, PredictionRow)) == 30, "predictions flushed"
            )
        stats = _rows(client.store, RouteStatsRow)
        primary = [r for r in stats if r.role == "primary"]
        shadow = [r for r in stats if r.role == "shadow"]
        assert {(r.deployment, r.revision, r.model, r.version, r.plane) for r in primary} == {
            ("api", 2, "scorer", 1, "test:1")
        }
        assert sum(r.requests for r in primary) == 30 and sum(r.errors for r in primary) == 0
        assert sum(sum(r.latency) for r in primary) == 30
        assert sorted(v for r in primary for v in r.predictions) == pytest.approx(
            [float(i) for i in range(1, 31)], abs=1e-4
        )
        assert {(r.model, r.version) for r in shadow} == {("scorer", 2)}
        assert sum(r.shadow_agree for r in shadow) == 0  # 2 * x0 is never x0 here
        predictions = {p.request_id: p for p in _rows(client.store, PredictionRow)}
        assert set(predictions) == set(ids)
        assert predictions[ids[3]].output == pytest.approx(4.0, abs=1e-4)
        assert {(p.deployment, p.revision, p.model, p.version) for p in predictions.values()} == {
            ("api", 2, "scorer", 1)
        }

    run(main())


def test_the_recorder_caps_predictions_ignores_repeated_ids_and_survives_a_failing_database(
    client: Registry,
) -> None:
    store = client.store
    recorder = Recorder(store.database, plane="p", max_predictions_per_flush=5)
    route = Route("api", 1, Target("scorer", 1, "primary"))
    for index in range(8):
        recorder.record(Outcome(route, f"id-{index}", 0.001, True, [index], float(index)))
    recorder.record(Outcome(route, "id-0", 0.001, True, ["again"], 0.0))  # a repeated id
    recorder.record(Outcome(route, "bad", 0.2, False))
    recorder.flush()
    assert recorder.dropped_predictions == 4 and recorder.prediction_rows == 5
    (row,) = _rows(store, RouteStatsRow)
    assert (row.requests, row.errors, len(row.predictions)) == (10, 1, 9)
    assert len(_rows(store, PredictionRow)) == 5
    recorder.record(Outcome(route, "id-0", 0.001, True, ["third"], 0.0))
    recorder.flush()  # the id is already stored: ignored, not an error
    assert recorder.flush_failures == 0
    assert {p.request_id: p.output for p in _rows(store, PredictionRow)}["id-0"] == [0]

    class Broken:
        is_postgres = store.database.is_postgres

        def write(self) -> Any:
            raise RuntimeError("database down")

    failing = Recorder(Broken(), plane="q")  # type: ignore[arg-type]
    failing.record(Outcome(route, "x", 0.001, True, [1], 1.0))
    failing.flush()
    failing.record(Outcome(route, "y", 0.001, False))
    assert failing.flush_failures == 1 and failing.dropped_predictions == 1
    failing._database = store.database  # back up: the kept statistics are written
    failing.flush()
    rows = [r for r in _rows(store, RouteStatsRow) if r.plane == "q"]
    assert [(r.requests, r.errors) for r in rows] == [(2, 1)]
    with store.database.read() as session:
        assert session.scalar(select(func.count()).select_from(PredictionRow)) == 5


def test_counts_split_by_key(client: Registry) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")
    deployments.deploy("api", "scorer:2", strategy="ab", weight=20)

    async def main() -> None:
        async with serving(client.store) as plane:
            first = {k: await answer(plane, k) for k in (f"u{i}" for i in range(300))}
            for key, version in list(first.items())[:50]:
                assert await answer(plane, key) == version
            counts = Counter(first.values())
            assert abs(counts["scorer:2"] - 60) <= 3 * (300 * 0.2 * 0.8) ** 0.5

    run(main())


def test_only_the_named_deployments_are_served(client: Registry) -> None:
    deployments = Deployments(client.store)
    deployments.deploy("api", "scorer:1")
    deployments.deploy("other", "scorer:2")

    async def main() -> None:
        async with serving(client.store, names=["api"]) as plane:
            assert plane.router.names() == ("api",)
            assert plane.host.pinned("scorer", 2) is None  # never loaded
            infer, lookup = request()
            with pytest.raises(NotFound, match="'other' is not served"):
                await plane.data.infer(InferRequest("other", infer.inputs), lookup)
            await asyncio.to_thread(deployments.deploy, "other", "scorer:3")
            await asyncio.to_thread(deployments.deploy, "api", "scorer:2")
            await eventually(lambda: plane.router.revisions() == {"api": 2}, "api moved")
            assert plane.host.pinned("scorer", 3) is None

    run(main())


# -- feedback by business key ---------------------------------------------------------------

KEY_SECRET = bytes(range(16, 48))


def _orders(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "order_id": np.arange(1000, 1000 + n),
            "amount": rng.normal(size=n),
            "age": rng.normal(size=n),
        }
    )


def test_a_deployment_records_keys_that_feedback_finds(client: Registry) -> None:
    orders = _orders(60)
    keep = ColumnTransformer([("features", "passthrough", ["amount", "age"])])  # drops order_id
    model = make_pipeline(keep, LogisticRegression()).fit(orders, orders["amount"] > 0)
    client.register(model, "orders", sample_input=orders.head(5))
    Deployments(client.store).deploy("checkout", "orders:1")

    async def main() -> dict[str, str]:
        ids: dict[str, str] = {}
        async with serving(client.store, feedback_key="order_id", hash_key=KEY_SECRET) as plane:
            await eventually(lambda: plane.data.model_ready("checkout"), "deployment loaded")
            row = orders.iloc[[0]]
            tensors = tuple(
                Tensor(c, "INT64" if c == "order_id" else "FP64", (1,), row[c].to_numpy())
                for c in orders.columns
            )
            result = await plane.data.infer(InferRequest("checkout", tensors), None)
            assert result.id is not None  # the data plane gives each deployment request one
            ids["1000"] = result.id
            await plane.data.predict("checkout", None, orders.iloc[[1]], None, "req-1001")
            ids["1001"] = "req-1001"
            await eventually(lambda: len(_rows(client.store, PredictionRow)) == 2, "flushed")
        return ids

    ids = asyncio.run(main())
    keys = {p.request_id: p.key for p in _rows(client.store, PredictionRow)}
    assert keys[ids["1000"]] == key_digest(KEY_SECRET, "1000")
    assert keys[ids["1001"]] == key_digest(KEY_SECRET, "1001")
    assert "1000" not in str(keys)  # the raw key is never stored

    store = FeedbackStore(client.store.database, KEY_SECRET)
    outcome = store.add([KeyedFeedback("1000", 1), KeyedFeedback("1001", 0)], "crm")
    assert (outcome.stored, outcome.unmatched_keys) == (2, [])
    labels = {r.request_id: r.value for r in _rows(client.store, FeedbackRow)}
    assert labels == {ids["1000"]: 1, ids["1001"]: 0}
