"""ModelHost and DataPlane with real registered models, on SQLite and PostgreSQL.

Timings are never asserted; bounded waits ("swapped within 5 s") are liveness bounds only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard import InvalidArgument, NotFound, Registry, Unavailable
from shipyard.app.settings import Settings
from shipyard.core.refs import ModelRef
from shipyard.core.tensors import InferRequest, RequestedOutput, Tensor
from shipyard.packaging.load import load_version
from shipyard.packaging.register import REFERENCE_FILE
from shipyard.registry import service
from shipyard.serving.batcher import BatchSettings
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.host import ModelHost
from shipyard.serving.metrics import LOAD_FAILURES, ServingMetrics
from shipyard.serving.served import REFERENCE_ARTIFACT, Loaded, Loader
from shipyard.serving.types import ModelState

POLL = 0.05
LIVENESS = 5.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with Registry(settings=settings) as registry:
        yield registry


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    X, _ = make_classification(300, 8, random_state=0)
    return np.asarray(X, dtype=np.float32)


def forest(X: np.ndarray, seed: int) -> RandomForestClassifier:
    y = (X[:, seed % X.shape[1]] > 0).astype(int)  # each seed learns a different rule
    return RandomForestClassifier(10, max_depth=5, random_state=seed).fit(X, y)


@asynccontextmanager
async def serving(
    store: service.Registry, *refs: str, loader: Loader = load_version, **batch: Any
) -> AsyncIterator[DataPlane]:
    metrics = ServingMetrics(CollectorRegistry())
    host = ModelHost(
        store,
        [ModelRef.parse(r) for r in refs],
        loader=loader,
        batch=BatchSettings(**batch),
        metrics=metrics,
        poll_interval_s=POLL,
    )
    await host.start()
    try:
        yield DataPlane(host, metrics, server_version="test")
    finally:
        await host.drain(LIVENESS)


def tensor_request(model: str, X: np.ndarray, version: str | None = None) -> InferRequest:
    return InferRequest(model, (Tensor("x", "FP32", X.shape, X),), version=version)


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while not check():
        assert time.monotonic() < deadline, f"not within {LIVENESS}s: {what}"
        await asyncio.sleep(0.02)


def test_reference_artifact_name_matches_packaging() -> None:
    assert REFERENCE_ARTIFACT == REFERENCE_FILE


def test_tensor_infer_matches_in_process_predictions(client: Registry, data: np.ndarray) -> None:
    model = forest(data, 0)
    client.register(model, "forest", sample_input=data[:50], reference_data=data)

    async def main() -> None:
        async with serving(client.store, "forest", max_wait_ms=2) as plane:
            assert plane.ready() and plane.model_ready("forest") and plane.live()
            result = await plane.infer(tensor_request("forest", data[:7]))
            assert (result.model_name, result.model_version) == ("forest", "1")
            out = {t.name: t for t in result.outputs}
            np.testing.assert_array_equal(out["predict"].data, model.predict(data[:7]))
            proba = out["predict_proba"].data
            np.testing.assert_allclose(proba, model.predict_proba(data[:7]), atol=1e-5)
            assert out["predict_proba"].shape == (7, 2) and out["predict"].shape == (7,)

            # Many single-row callers at once: each gets exactly its own row back.
            rows = await asyncio.gather(
                *(plane.infer(tensor_request("forest", data[i : i + 1])) for i in range(100))
            )
            got = np.concatenate([r.outputs[0].data for r in rows])
            np.testing.assert_array_equal(got, model.predict(data[:100]))

            only = InferRequest(
                "forest",
                (Tensor("x", "FP64", (1, 8), data[:1].astype(np.float64)),),
                outputs=(RequestedOutput("predict_proba"),),
            )
            assert [t.name for t in (await plane.infer(only)).outputs] == ["predict_proba"]
            bad = InferRequest("forest", only.inputs, outputs=(RequestedOutput("nope"),))
            with pytest.raises(InvalidArgument, match="predict, predict_proba"):
                await plane.infer(bad)
            with pytest.raises(InvalidArgument, match=r"expects shape \[-1, 8\]"):
                await plane.infer(tensor_request("forest", data[:2, :5]))
            with pytest.raises(NotFound, match="'forest' version 9 is not served"):
                await plane.infer(tensor_request("forest", data[:1], version="9"))
            with pytest.raises(NotFound, match="'other' is not served"):
                plane.model_ready("other")

            served, outputs = await plane.predict(None, None, data[:3])
            assert (served.name, served.version) == ("forest", 1)
            np.testing.assert_array_equal(outputs["predict"], model.predict(data[:3]))
            meta = await plane.model_metadata("forest")
            assert meta.platform == "onnxruntime" and meta.versions == ("1",)
            assert [s.shape for s in meta.inputs] == [(-1, 8)]
            assert {s.name for s in meta.outputs} == {"predict", "predict_proba"}
            assert plane.server_metadata().extensions == ("binary_tensor_data", "model_repository")

    run(main())


def test_columnar_pipeline_with_a_string_column(client: Registry) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=200),
            "age": rng.integers(18, 90, 200),
            "country": rng.choice(["de", "fr", "us"], 200),
        }
    )
    y = (frame["amount"] + (frame["country"] == "us") > 0.5).astype(int)
    prep = ColumnTransformer(
        [("num", StandardScaler(), ["amount", "age"]), ("cat", OneHotEncoder(), ["country"])]
    )
    pipe = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, y)
    client.register(pipe, "pipe", sample_input=frame.head(40), reference_data=frame)
    rows = frame.iloc[:6]

    async def main() -> None:
        async with serving(client.store, "pipe") as plane:
            countries = np.array([c.encode() for c in rows["country"]], dtype=object)
            request = InferRequest(
                "pipe",
                (
                    Tensor("amount", "FP64", (6,), rows["amount"].to_numpy()),
                    Tensor("age", "INT64", (6, 1), rows["age"].to_numpy().reshape(6, 1)),
                    Tensor("country", "BYTES", (6,), countries),
                ),
            )
            result = await plane.infer(request)
            out = {t.name: t.data for t in result.outputs}
            np.testing.assert_array_equal(out["predict"], pipe.predict(rows))
            np.testing.assert_allclose(out["predict_proba"], pipe.predict_proba(rows), atol=1e-5)
            _, outputs = await plane.predict("pipe", "1", rows)
            np.testing.assert_array_equal(outputs["predict"], pipe.predict(rows))
            with pytest.raises(InvalidArgument, match="unknown column 'colour'"):
                await plane.infer(
                    InferRequest(
                        "pipe", (*request.inputs, Tensor("colour", "BYTES", (6,), countries))
                    )
                )
            with pytest.raises(InvalidArgument, match="missing input columns: country"):
                await plane.infer(InferRequest("pipe", request.inputs[:2]))

    run(main())


def test_alias_move_swaps_versions_without_failing_a_request(
    client: Registry, data: np.ndarray
) -> None:
    models = {1: forest(data, 1), 2: forest(data, 2)}
    for model in models.values():
        client.register(model, "fraud", sample_input=data[:20])
    client.set_alias("fraud", "production", 1)
    expected = {str(v): m.predict(data[:16]) for v, m in models.items()}
    assert not np.array_equal(expected["1"], expected["2"])

    async def main() -> None:
        async with serving(client.store, "fraud:1", "fraud@production") as plane:
            seen: list[str] = []
            stop = asyncio.Event()

            async def caller(i: int) -> None:
                while not stop.is_set():
                    result = await plane.infer(tensor_request("fraud", data[i : i + 2]))
                    want = expected[result.model_version][i : i + 2]
                    np.testing.assert_array_equal(result.outputs[0].data, want)
                    seen.append(result.model_version)
                    await asyncio.sleep(0)

            callers = [asyncio.ensure_future(caller(i)) for i in range(8)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(client.set_alias, "fraud", "production", 2)
            await eventually(lambda: plane.host.get("fraud").version == 2, "alias followed")
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*callers)  # any failed request raises here
            assert seen[0] == "1" and seen[-1] == "2"
            # The pinned ref keeps version 1 served next to the alias.
            assert (await plane.infer(tensor_request("fraud", data[:1], "1"))).model_version == "1"
            index = {(e.name, e.version): e.state for e in plane.repository_index()}
            assert index == {("fraud", "1"): ModelState.READY, ("fraud", "2"): ModelState.READY}

    run(main())


def test_failing_loads_keep_the_previous_version_serving(
    client: Registry, data: np.ndarray
) -> None:
    client.register(forest(data, 0), "fraud", sample_input=data[:20])
    corrupt = client.register(forest(data, 5), "fraud", compile=False)
    for _ in range(4):
        client.register(forest(data, 0), "fraud", compile=False)
    blob = client.store.blobs.path(corrupt.artifacts["native/model.skops"].sha256)
    os.chmod(blob, 0o600)
    blob.write_bytes(blob.read_bytes()[:100])  # truncated on disk
    client.set_alias("fraud", "production", 1)

    def loader(store: service.Registry, ref: ModelRef) -> Loaded:
        if ref.version is not None and ref.version >= 3:
            raise RuntimeError(f"/secret/path/{ref.version} exploded")
        return load_version(store, ref)

    def failure_recorded(plane: DataPlane, version: int) -> Callable[[], bool]:
        return lambda: any(e.version == str(version) for e in plane.repository_index())

    async def main() -> None:
        async with serving(client.store, "fraud@production", loader=loader) as plane:
            for version in range(2, 7):
                await asyncio.to_thread(client.set_alias, "fraud", "production", version)
                await eventually(failure_recorded(plane, version), f"v{version} failure recorded")
                result = await plane.infer(tensor_request("fraud", data[:3]))
                assert result.model_version == "1"
            failed = {e.version: e for e in plane.repository_index() if e.version != "1"}
            assert set(failed) == {"2", "3", "4", "5", "6"}
            assert all(e.state is ModelState.UNAVAILABLE for e in failed.values())
            assert "corrupt" in failed["2"].reason
            assert failed["3"].reason == "RuntimeError (details in the server log)"
            assert plane.ready()
            assert plane.metrics is not None
            count = plane.metrics.registry.get_sample_value(
                LOAD_FAILURES + "_total", {"model": "fraud"}
            )
            assert count is not None and count >= 5

    run(main())


def test_an_unreachable_registry_keeps_serving_and_recovers(
    client: Registry,
    data: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for seed in (1, 2):
        client.register(forest(data, seed), "fraud", sample_input=data[:20])
    client.set_alias("fraud", "production", 1)
    store = client.store
    real_revision = store.revision

    def down() -> int:
        raise ConnectionError("database is down")

    async def main() -> None:
        async with serving(store, "fraud@production") as plane:
            monkeypatch.setattr(store, "revision", down)
            with caplog.at_level(logging.WARNING, logger="shipyard.serving.host"):
                for _ in range(10):
                    await asyncio.sleep(POLL)
                    assert (
                        await plane.infer(tensor_request("fraud", data[:2]))
                    ).model_version == "1"
            assert sum("registry unreachable" in r.message for r in caplog.records) == 1
            monkeypatch.setattr(store, "revision", real_revision)
            await asyncio.to_thread(client.set_alias, "fraud", "production", 2)
            await eventually(lambda: plane.host.get("fraud").version == 2, "recovered")

    run(main())


def test_drain_answers_requests_in_flight_and_refuses_new_ones(
    client: Registry, data: np.ndarray
) -> None:
    model = forest(data, 0)
    client.register(model, "forest", sample_input=data[:20])

    async def main() -> None:
        async with serving(client.store, "forest", max_wait_ms=300) as plane:
            calls = [
                asyncio.ensure_future(plane.infer(tensor_request("forest", data[i : i + 1])))
                for i in range(32)
            ]
            await asyncio.sleep(0.01)  # they now wait in the batch queue
            draining = asyncio.ensure_future(plane.host.drain(LIVENESS))
            await asyncio.sleep(0)
            assert not plane.ready()
            with pytest.raises(Unavailable, match="server is shutting down"):
                await plane.infer(tensor_request("forest", data[:1]))
            results = await asyncio.gather(*calls)
            await draining
            got = np.concatenate([r.outputs[0].data for r in results])
            np.testing.assert_array_equal(got, model.predict(data[:32]))

    run(main())


def test_repository_load_and_unload(client: Registry, data: np.ndarray) -> None:
    client.register(forest(data, 0), "forest", sample_input=data[:20])
    client.register(forest(data, 1), "other", sample_input=data[:20])

    async def main() -> None:
        async with serving(client.store, "forest") as plane:
            await plane.unload("forest")
            with pytest.raises(NotFound):
                await plane.infer(tensor_request("forest", data[:1]))
            assert [(e.name, e.state) for e in plane.repository_index()] == [
                ("forest", ModelState.UNAVAILABLE)
            ]
            await plane.load("forest")
            await plane.load("other")
            assert (await plane.infer(tensor_request("other", data[:1]))).model_name == "other"
            with pytest.raises(NotFound):
                await plane.load("missing")
            assert plane.ready() and plane.default_model == "forest"

    run(main())


def test_a_request_reaching_a_worker_still_loading_waits_instead_of_failing(
    client: Registry, data: np.ndarray
) -> None:
    model = forest(data, 0)
    client.register(model, "forest", sample_input=data[:50])

    def slow_loader(registry: service.Registry, ref: ModelRef) -> Any:
        time.sleep(0.5)  # a big model: the worker already listens while this runs
        return load_version(registry, ref)

    async def main() -> None:
        host = ModelHost(client.store, [ModelRef.parse("forest")], loader=slow_loader)
        plane = DataPlane(host, None, server_version="test")
        early = asyncio.ensure_future(plane.infer(tensor_request("forest", data[:2])))
        await asyncio.sleep(0)
        assert not host.started and not early.done()
        await host.start()
        result = await asyncio.wait_for(early, LIVENESS)
        np.testing.assert_array_equal(result.outputs[0].data, model.predict(data[:2]))
        await host.drain(LIVENESS)

    run(main())
