"""An in-process OIP gRPC server over a fake data plane, for tritonclient and raw stubs.

Fixtures using it are in conftest.py; tests import helpers from here (a unique module name,
unlike `conftest`).

The server runs on its own event loop in a background thread; tests call it synchronously
(tritonclient's sync client, or the generated stub on a plain channel).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np
import tritonclient.grpc as triton

from shipyard.core.errors import InvalidArgument, NotFound, Unavailable
from shipyard.core.signatures import TensorSpec
from shipyard.core.tensors import InferRequest, InferResult, Tensor
from shipyard.serving.types import ModelMetadata, ServerMetadata
from shipyard.transports.grpc import create_grpc_server

T = TypeVar("T")
MODELS = ("echo", "double", "busy", "boom", "slow")


class FakePlane:
    """echo returns its inputs; double doubles numeric inputs; busy is Unavailable; boom
    raises an unexpected error holding a secret; slow answers after a short sleep."""

    def __init__(self) -> None:
        self.is_ready = True

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self._known(name)
        return name != "busy"

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("shipyard", "0.1.0", ("binary_tensor_data",))

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        self._known(name)
        spec = (TensorSpec("x", "FP32", (-1, 3)),)
        return ModelMetadata(name, ("1", "2"), "fake", spec, spec)

    async def infer(self, request: InferRequest, header: Any = None) -> InferResult:
        self._known(request.model)
        if request.model == "busy":
            raise Unavailable("model 'busy' is overloaded; retry later")
        if request.model == "boom":
            raise RuntimeError("secret /var/lib/shipyard/key.pem leaked")
        if request.model == "slow":
            await asyncio.sleep(0.5)
        outputs = request.inputs
        if request.model == "double":
            outputs = tuple(Tensor(t.name, t.datatype, t.shape, t.data * 2) for t in outputs)
        if request.outputs:
            by_name = {t.name: t for t in outputs}
            missing = [o.name for o in request.outputs if o.name not in by_name]
            if missing:
                raise InvalidArgument(f"unknown output {missing[0]!r}")
            outputs = tuple(by_name[o.name] for o in request.outputs)
        version = request.version or "1"
        return InferResult(request.model, version, outputs, request.id, {"fake": True})

    def _known(self, name: str) -> None:
        if name not in MODELS:
            raise NotFound(f"model {name!r} not found")


@dataclass
class FakeMetrics:
    calls: list[tuple[str, str, str, str, float]] = field(default_factory=list)

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None:
        self.calls.append((model, version, protocol, status, seconds))


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    loop: LoopThread
    server: grpc.aio.Server
    port: int
    plane: FakePlane
    metrics: FakeMetrics

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        self.loop.run(self.server.stop(grace))


def serve(loop: LoopThread, **options: Any) -> Served:
    plane, metrics, port = FakePlane(), FakeMetrics(), free_port()

    async def start() -> grpc.aio.Server:
        server = create_grpc_server(plane, host="127.0.0.1", port=port, metrics=metrics, **options)
        await server.start()
        return server

    return Served(loop, loop.run(start()), port, plane, metrics)


def array(datatype: str, values: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    dtype = object if datatype == "BYTES" else triton.triton_to_np_dtype(datatype)
    return np.array(values, dtype=dtype).reshape(shape)
