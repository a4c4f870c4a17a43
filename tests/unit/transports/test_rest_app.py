"""The REST app in-process (httpx.ASGITransport) against a fake data plane."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest

from shipyard.core.errors import NotFound
from shipyard.core.signatures import TensorSpec
from shipyard.core.tensors import InferRequest, InferResult, Tensor
from shipyard.serving.types import (
    ModelMetadata,
    ModelState,
    RepositoryEntry,
    Served,
    ServerMetadata,
)
from shipyard.transports.rest.app import RestApp, RestOptions
from shipyard.transports.rest.requestlog import ACCESS_LOGGER

pytestmark = pytest.mark.anyio


class FakePlane:
    default_model = "m"

    def __init__(self) -> None:
        self.delay = 0.0
        self.explode = False
        self.is_ready = True
        self.loaded: list[str] = []

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def _check(self, name: str, version: str | None) -> None:
        if name != "m" or version not in (None, "1"):
            raise NotFound(f"model {name!r} version {version} is not served")

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self._check(name, version)
        return True

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("shipyard", "0.1.0", ("binary_tensor_data",))

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        self._check(name, version)
        spec = TensorSpec("x", "FP32", (-1, 2))
        return ModelMetadata(name, ("1",), "onnx", (spec,), (TensorSpec("predict", "FP32", (-1,)),))

    def repository_index(self) -> Sequence[RepositoryEntry]:
        return [RepositoryEntry("m", "1", ModelState.READY)]

    async def load(self, name: str) -> None:
        self.loaded.append(name)

    async def unload(self, name: str) -> None:
        self._check(name, None)

    async def infer(
        self, request: InferRequest, header: Any = None, request_id: str | None = None
    ) -> InferResult:
        self._check(request.model, request.version)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.explode:
            raise RuntimeError("secret detail")
        data = request.inputs[0].data.astype(np.float32).sum(axis=1)
        out = Tensor("predict", "FP32", data.shape, data)
        return InferResult("m", "1", (out,), id=request.id)

    async def predict(
        self,
        name: str | None,
        version: str | None,
        data: Any,
        header: Any = None,
        request_id: Any = None,
    ) -> tuple[Served, dict[str, np.ndarray]]:
        self._check(name or "m", version)
        array = np.asarray(data, dtype=np.float64)
        return Served("m", 1), {"predict": array.sum(axis=1)}


class Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None:
        self.seen.append((model, version, protocol, status))


def client(app: RestApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


INFER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}


async def test_health_metadata_and_infer() -> None:
    observer = Observer()
    app = RestApp(FakePlane(), observer=observer)
    async with client(app) as c:
        assert (await c.get("/v2/health/live")).json() == {"live": True}
        assert (await c.get("/v2/health/ready")).json() == {"ready": True}
        assert (await c.get("/v2")).json()["extensions"] == ["binary_tensor_data"]
        assert (await c.get("/v2/models/m")).json()["inputs"][0]["shape"] == [-1, 2]
        assert (await c.get("/v2/models/m/versions/1/ready")).json() == {"name": "m", "ready": True}
        r = await c.post("/v2/models/m/infer", content=json.dumps(INFER))  # no Content-Type
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [3.0, 7.0]
        assert r.headers["x-shipyard-model-version"] == "1"
        assert r.headers["x-request-id"]
        r = await c.post("/v1/models/m:predict", json={"instances": [[1, 2], [3, 4]]})
        assert r.json() == {"predictions": [3.0, 7.0]}
        r = await c.post("/invocations", json={"inputs": [[1, 2]]})
        assert r.json() == {"predictions": [3.0]}
    assert ("m", "1", "rest-v2", "OK") in observer.seen
    assert ("m", "1", "kserve-v1", "OK") in observer.seen
    assert ("m", "1", "mlflow", "OK") in observer.seen


async def test_errors_map_through_the_table() -> None:
    observer = Observer()
    app = RestApp(FakePlane(), observer=observer, options=RestOptions())
    async with client(app) as c:
        r = await c.post("/v2/models/nope/infer", json=INFER)
        assert r.status_code == 404 and "error" in r.json()
        assert (await c.get("/v2/models/m/infer")).status_code == 405
        assert (await c.get("/v2/models/m/infer")).headers["allow"] == "POST"
        r = await c.post("/v2/models/m/infer", content=b"{", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert (await c.post("/v2/models/m/infer", content=b"{")).status_code == 400
        assert (await c.get("/v2/models/..%2f..%2fetc/ready")).status_code in (400, 404)
        assert (await c.get("/nothing")).status_code == 404
        r = await c.post("/v2/repository/models/m/load", content=b"")
        assert r.status_code == 415  # state changes need application/json: no CSRF
    assert ("-", "", "rest-v2", "NOT_FOUND") in observer.seen  # unknown names: one label value


async def test_bounded_body_gzip_and_request_id() -> None:
    app = RestApp(FakePlane(), options=RestOptions())
    async with client(app) as c:
        body = gzip.compress(json.dumps(INFER).encode())
        r = await c.post(
            "/v2/models/m/infer",
            content=body,
            headers={"content-encoding": "gzip", "x-request-id": "abc-123"},
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
        bomb = gzip.compress(b" " * (65 * 1024 * 1024))
        r = await c.post("/v2/models/m/infer", content=bomb, headers={"content-encoding": "gzip"})
        assert r.status_code == 413
        big = b"[" + b"0," * (33 * 1024 * 1024) + b"0]"
        assert (await c.post("/v2/models/m/infer", content=big)).status_code == 413
        r = await c.post("/v2/models/m/infer", json=INFER, headers={"x-request-id": "bad id\x01"})
        assert r.headers["x-request-id"] != "bad id\x01"


async def test_gzip_response_when_large_and_accepted() -> None:
    rows = [[float(i), 1.0] for i in range(500)]
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [500, 2], "data": rows}]}
    async with client(RestApp(FakePlane())) as c:
        r = await c.post("/v2/models/m/infer", json=doc, headers={"accept-encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert len(r.json()["outputs"][0]["data"]) == 500  # httpx inflates it


async def test_timeout_capacity_and_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    plane = FakePlane()
    app = RestApp(plane, options=RestOptions(request_timeout_s=0.05, max_in_flight=2))
    async with client(app) as c:
        plane.delay = 0.2
        r = await c.post("/v2/models/m/infer", json=INFER)
        assert r.status_code == 504 and r.headers["retry-after"] == "1"
        plane.delay = 0.04
        answers = await asyncio.gather(
            *(c.post("/v2/models/m/infer", json=INFER) for _ in range(5))
        )
        codes = sorted(a.status_code for a in answers)
        assert codes.count(200) == 2 and codes.count(503) == 3
        plane.delay, plane.explode = 0.0, True
        with caplog.at_level(logging.ERROR, logger="shipyard"):
            r = await c.post("/v2/models/m/infer", json=INFER, headers={"x-request-id": "r-9"})
        assert r.status_code == 500 and "secret" not in r.text
        assert any(getattr(rec, "request_id", None) == "r-9" for rec in caplog.records)


async def test_readiness_follows_plane_and_draining() -> None:
    plane = FakePlane()
    app = RestApp(plane)
    async with client(app) as c:
        plane.is_ready = False
        assert (await c.get("/v2/health/ready")).status_code == 503
        assert (await c.get("/ping")).status_code == 503
        plane.is_ready = True
        assert (await c.get("/health")).status_code == 200
        app.lifecycle.draining = True
        assert (await c.get("/v2/health/ready")).status_code == 503
        assert (await c.get("/v2/health/live")).status_code == 200


async def test_access_log_one_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    async with client(RestApp(FakePlane())) as c:
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            await c.post("/v2/models/m/infer", json=INFER, headers={"x-request-id": "q1"})
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    line = record.msg
    assert isinstance(line, dict)
    assert line["request_id"] == "q1" and line["status"] == 200 and line["model"] == "m"
    assert line["version"] == "1" and line["protocol"] == "rest-v2" and line["duration_ms"] >= 0
    async with client(RestApp(FakePlane(), options=RestOptions(access_log=False))) as c:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            await c.get("/v2/health/live")
        assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]


def test_access_log_fast_path_writes_the_formatters_line() -> None:
    import io

    from shipyard.transports.rest.requestlog import (
        AccessLog,
        BufferedStderrHandler,
        JsonLineFormatter,
    )

    handler = BufferedStderrHandler()
    out = io.BytesIO()
    handler._out = out  # type: ignore[assignment]
    parent = logging.getLogger("shipyard")
    saved = parent.handlers[:], parent.propagate, parent.level
    parent.handlers[:], parent.propagate = [handler], False
    parent.setLevel(logging.INFO)
    try:
        access = AccessLog()
        assert access._sink() is handler
        access.write("q1", "POST", "/v2/models/m/infer", 200, 0.0012345, "m", "1", "rest-v2")
        line = json.loads(out.getvalue())
        record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, None, None, None)
        record.msg = dict(line)
        assert JsonLineFormatter().line(record) == out.getvalue()
        assert line["request_id"] == "q1" and line["duration_ms"] == 1.234
        assert line["status"] == 200 and line["protocol"] == "rest-v2"
        parent.propagate = True  # another handler could see the record: the logging path
        assert access._sink() is None
    finally:
        parent.handlers[:], parent.propagate = saved[0], saved[1]
        parent.setLevel(saved[2])
        handler.close()
