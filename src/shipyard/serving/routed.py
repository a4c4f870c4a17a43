"""The data plane's path for deployment names: route, answer, record, shadow.

Routing picks a version (`Routing.choose`); the host holds it pinned; the version answers
through its batcher and the response cache as any model does. The outcome is recorded: errors
from the chosen version (after the input was accepted: the model raised, or failed to answer in
time) count against that version, while input the version refuses up front is the caller's
fault and not counted. With a shadow, a copy of the request goes through a bounded queue to
one background task after the primary answered: a full queue drops the copy (counted), so a
slow or failing shadow never changes or delays what the caller gets.

Invariant shared with the host: no await between `choose()` and `host.pinned()`, so a request
never picks a version whose routing table has already been replaced and released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import NotFound, Unavailable
from shipyard.core.signatures import Prepared
from shipyard.core.tensors import InferRequest, InferResult, Tensor
from shipyard.runtimes.base import Outputs
from shipyard.serving.host import ModelHost
from shipyard.serving.routing import Lookup, Outcome, Route, Routing, Target, no_lookup
from shipyard.serving.served import ServedModel
from shipyard.serving.tap import EventTap
from shipyard.serving.types import ModelMetadata, Served

logger = logging.getLogger(__name__)

Answer = Callable[[ServedModel, Prepared, int], Awaitable[Outputs]]
# Prepares the shadow version's own input from the request (its signature may differ).
Prepare = Callable[[ServedModel], tuple[Prepared, int]]
SHADOW_QUEUE = 256
AGREE_RTOL = 1e-6


class RoutedPlane:
    def __init__(
        self,
        host: ModelHost,
        routing: Routing,
        answer: Answer,
        *,
        shadow_queue: int = SHADOW_QUEUE,
        tap: EventTap | None = None,
        feedback_key: str | None = None,
    ) -> None:
        self._host = host
        self._feedback_key = feedback_key  # the input recorded as each prediction's key
        self._tap = tap
        self._routing = routing
        self._answer = answer
        self._queue: asyncio.Queue[tuple[Route, Prepare, Outputs]] | None = None
        self._queue_size = shadow_queue
        self._worker: asyncio.Task[None] | None = None
        self.shadow_dropped = 0

    def serves(self, name: str) -> bool:
        return self._routing.serves(name)

    def ready(self, name: str) -> bool:
        route = self._routing.route_of(name)
        return route is not None and self._pinned(route.target) is not None

    def metadata(self, name: str) -> ModelMetadata:
        route = self._routing.route_of(name)
        if route is None:
            raise NotFound(f"model {name!r} is not served")
        meta = self._served(route).metadata
        return ModelMetadata(name, (route.target.label,), meta.platform, meta.inputs, meta.outputs)

    # -- inference ---------------------------------------------------------------------------

    async def infer(
        self, request: InferRequest, header: Lookup | None, request_id: str | None = None
    ) -> InferResult:
        field = _tensor_field(request.inputs)
        route = self._choose(request.model, header, field)
        served = self._served(route)
        plan = served.plan
        plan.check_outputs(request.outputs)
        prepared, rows = plan.inputs(request.inputs)
        request_id = request.id or request_id or str(uuid.uuid4())
        outputs = await self._run(route, served, prepared, rows, request_id, self._key(field))
        encoded = plan.encode(outputs, request.outputs)
        if route.shadow is not None:
            self._copy(route, lambda shadow: shadow.plan.inputs(request.inputs), outputs)
        return InferResult(
            model_name=request.model,
            model_version=route.target.label,
            outputs=encoded,
            id=request_id,
        )

    async def predict(
        self, name: str, data: Any, header: Lookup | None, request_id: str | None
    ) -> tuple[Served, Outputs]:
        field = _table_field(data)
        route = self._choose(name, header, field)
        served = self._served(route)
        prepared, rows = served.plan.prepare(data)
        request_id = request_id or str(uuid.uuid4())
        outputs = await self._run(route, served, prepared, rows, request_id, self._key(field))
        if route.shadow is not None:
            self._copy(route, lambda shadow: shadow.plan.prepare(data), outputs)
        return served.served, outputs

    def _key(self, field: Lookup) -> str | None:
        return field(self._feedback_key) if self._feedback_key is not None else None

    def _choose(self, name: str, header: Lookup | None, field: Lookup) -> Route:
        route = self._routing.choose(name, header or no_lookup, field)
        if route is None:
            raise NotFound(f"model {name!r} is not served")
        return route

    def _pinned(self, target: Target) -> ServedModel | None:
        return self._host.pinned(target.model, target.version)

    def _served(self, route: Route) -> ServedModel:
        served = self._pinned(route.target)
        if served is None:  # the host and the routing table disagree: a bug, not load
            raise Unavailable(f"{route.target.label} of {route.deployment!r} is not loaded")
        return served

    async def _run(
        self,
        route: Route,
        served: ServedModel,
        prepared: Prepared,
        rows: int,
        request_id: str,
        key: str | None,
    ) -> Outputs:
        started = time.perf_counter()
        try:
            outputs = await self._answer(served, prepared, rows)
        except BaseException:  # cancelled (deadline) or failed: the version's error
            seconds = time.perf_counter() - started
            self._routing.record(Outcome(route, request_id, seconds, ok=False))
            raise
        seconds = time.perf_counter() - started
        output, prediction = first_row(outputs)
        self._routing.record(Outcome(route, request_id, seconds, True, output, prediction, key))
        if self._tap is not None:
            self._tap.record(served, prepared, outputs, started, request_id, route.deployment)
        return outputs

    # -- shadow ------------------------------------------------------------------------------

    def _copy(self, route: Route, prepare: Prepare, primary: Outputs) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
            self._worker = asyncio.get_running_loop().create_task(self._shadows(), name="shadow")
        try:
            self._queue.put_nowait((route, prepare, primary))
        except asyncio.QueueFull:
            self.shadow_dropped += 1
            if self.shadow_dropped == 1 or self.shadow_dropped % 1000 == 0:
                logger.warning("shadow queue full: %d copies dropped", self.shadow_dropped)

    async def _shadows(self) -> None:
        assert self._queue is not None
        while True:
            route, prepare, primary = await self._queue.get()
            try:
                await self._shadow(route, prepare, primary)
            except Exception:  # a bug here must not stop the shadow worker
                logger.exception("shadow copy failed")

    async def _shadow(self, route: Route, prepare: Prepare, primary: Outputs) -> None:
        assert route.shadow is not None
        served = self._pinned(route.shadow)
        if served is None:
            return  # the revision moved on and released the shadow
        started = time.perf_counter()
        try:
            prepared, rows = prepare(served)
            outputs = await served.infer(prepared, rows)
        except Exception as exc:
            seconds = time.perf_counter() - started
            logger.debug("shadow %s failed: %s", route.shadow.label, exc)
            self._routing.record_shadow(route, ok=False, agree=False, seconds=seconds)
            return
        seconds = time.perf_counter() - started
        agree = agrees(primary, outputs)
        self._routing.record_shadow(route, ok=True, agree=agree, seconds=seconds)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None


def agrees(primary: Outputs, shadow: Outputs) -> bool:
    """Whether the shadow's first output matches the primary's: labels equal, numbers
    within a relative 1e-6."""
    if not primary or not shadow:
        return False
    name, expected = next(iter(primary.items()))
    actual = shadow.get(name)
    if actual is None:
        actual = next(iter(shadow.values()))
    if expected.shape != actual.shape:
        return False
    if expected.dtype.kind in "biuf" and actual.dtype.kind in "biuf":
        return bool(np.allclose(actual, expected, rtol=AGREE_RTOL, atol=0.0, equal_nan=True))
    return bool(np.array_equal(expected, actual))


def first_row(outputs: Outputs) -> tuple[Any, float | None]:
    """The first output's first row as JSON-ready data, and its first value when numeric."""
    if not outputs:
        return None, None
    array = next(iter(outputs.values()))
    if len(array) == 0:
        return None, None
    row = array[0]
    value = row.tolist() if isinstance(row, np.ndarray | np.generic) else row
    prediction = float(array.flat[0]) if array.dtype.kind in "biuf" else None
    return _jsonable(value), prediction


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value.item() if isinstance(value, np.generic) else value)


def _tensor_field(inputs: Sequence[Tensor]) -> Lookup:
    def lookup(name: str) -> str | None:
        for tensor in inputs:
            if tensor.name == name and tensor.data.size:
                return _text(tensor.data.flat[0])
        return None

    return lookup


def _table_field(data: Any) -> Lookup:
    def lookup(name: str) -> str | None:
        if isinstance(data, pd.DataFrame):
            if name in data.columns and len(data):
                return _text(data[name].iloc[0])
        elif isinstance(data, Mapping) and name in data:
            values = np.asarray(data[name])
            if values.size:
                return _text(values.flat[0])
        return None

    return lookup
