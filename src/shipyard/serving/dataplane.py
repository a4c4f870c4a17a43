"""The data plane: the one inference path shared by REST, gRPC, batch and streaming.

Transports decode their wire format into core types, call a method here and encode what it
returns (STYLE.md §1). Nothing in this module knows about HTTP or gRPC.

A name the `routing` serves is a deployment: each request is routed to one of its versions
(routed.py), the outcome recorded, and a shadow copy queued when the revision has one. Without
routing (a server of plain models) the request path is exactly as before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import EventEmitter
from shipyard.core.signatures import Prepared
from shipyard.core.tensors import InferRequest, InferResult
from shipyard.runtimes.base import Outputs
from shipyard.serving.cache import ResponseCache, cache_key
from shipyard.serving.host import ModelHost
from shipyard.serving.metrics import CACHE_HIT, CACHE_MISS, ServingMetrics
from shipyard.serving.routed import RoutedPlane
from shipyard.serving.routing import Lookup, Routing
from shipyard.serving.served import ServedModel
from shipyard.serving.tap import EventTap
from shipyard.serving.types import (
    ModelMetadata,
    ModelState,
    RepositoryEntry,
    Served,
    ServerMetadata,
)

EXTENSIONS = ("binary_tensor_data", "model_repository")


def _installed_version() -> str:
    # Not `shipyard.__version__`: importing the root package pulls in the client layer.
    try:
        return metadata.version("shipyard")
    except metadata.PackageNotFoundError:
        return "0+unknown"


_VERSIONED = "deployment {name!r} picks the version for each request; call it without a version"
# How long a request that reaches a worker still loading its models waits for them; the
# transport's own request deadline still applies.
STARTUP_WAIT_S = 120.0


class DataPlane:
    """Server and model health, metadata, the repository extension and inference."""

    def __init__(
        self,
        host: ModelHost,
        metrics: ServingMetrics | None = None,
        *,
        server_name: str = "shipyard",
        server_version: str | None = None,
        cache: ResponseCache | None = None,
        routing: Routing | None = None,
        default_model: str | None = None,
        events: EventEmitter | None = None,
        feedback_key: str | None = None,
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.cache = cache
        self.routing = routing
        self._default = default_model
        # With an emitter every answered request becomes a PredictionEvent and carries an id
        # (the caller's, or a new uuid4 returned to it) that feedback can name later.
        self._tap = EventTap(events) if events is not None else None
        self._routed = (
            RoutedPlane(host, routing, self._answer, tap=self._tap, feedback_key=feedback_key)
            if routing is not None
            else None
        )
        self._warm = False  # set once models (and the first routing table) are in
        version = server_version or _installed_version()
        self._server = ServerMetadata(server_name, version, EXTENSIONS)

    # -- health and metadata -----------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        routing = self.routing
        return self.host.ready() and (routing is None or routing.ready())

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """NotFound for a model this server does not serve; False while it is not ready."""
        if self._routed is not None and self._routed.serves(name):
            return version is None and self._routed.ready(name)
        return self.host.is_ready(name, version)

    def server_metadata(self) -> ServerMetadata:
        return self._server

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """Waits, like inference, for a worker still loading: a client's first call is often
        metadata, and a 404 for a model that is about to be served would mislead it."""
        if not self._warm:
            await self._wait_started()
        if self._routed is not None and self._routed.serves(name):
            if version is not None:
                raise InvalidArgument(_VERSIONED.format(name=name))
            return self._routed.metadata(name)
        served = self.host.get(name, version)
        meta = served.metadata
        if version is None:  # the name's metadata lists every version served under it
            versions = tuple(str(s.version) for s in self.host.versions(name))
            meta = ModelMetadata(meta.name, versions, meta.platform, meta.inputs, meta.outputs)
        return meta

    @property
    def default_model(self) -> str:
        """The first configured model (or deployment): what unnamed protocols (MLflow,
        KServe v1) call."""
        return self._default or self.host.default_model

    # -- repository extension ----------------------------------------------------------------

    def repository_index(self) -> list[RepositoryEntry]:
        entries = self.host.repository_index()
        if self.routing is not None:  # deployments: READY when routed, with any failure
            for name, (revision, note) in self.routing.status().items():
                state = ModelState.READY if revision is not None else ModelState.UNAVAILABLE
                shown = f"revision {revision}" if revision is not None else ""
                entries.append(RepositoryEntry(name, shown, state, note))
        return entries

    async def load(self, name: str) -> None:
        await self.host.load(name)

    async def unload(self, name: str) -> None:
        await self.host.unload(name)

    # -- inference ---------------------------------------------------------------------------

    async def _wait_started(self) -> None:
        if not self.host.started:
            await self.host.wait_started(STARTUP_WAIT_S)
        if self.routing is not None:
            await self.routing.wait_ready(STARTUP_WAIT_S)
        self._warm = self.host.started and (self.routing is None or self.routing.ready())

    async def close(self) -> None:
        """Stop the shadow worker (queued shadow copies are dropped)."""
        if self._routed is not None:
            await self._routed.close()

    async def infer(
        self, request: InferRequest, header: Lookup | None = None, request_id: str | None = None
    ) -> InferResult:
        """Open Inference Protocol inference; `model_version` is the version that answered
        (`model:version` for a deployment). `header` looks up request headers for routing;
        `request_id` is the transport's id (X-Request-ID), the prediction id when the body
        names none."""
        if not self._warm:
            await self._wait_started()
        routed = self._routed
        if routed is not None and routed.serves(request.model):
            if request.version is not None:
                raise InvalidArgument(_VERSIONED.format(name=request.model))
            return await routed.infer(request, header, request_id)
        served = self.host.get(request.model, request.version)
        plan = served.plan
        plan.check_outputs(request.outputs)  # refuse before the model runs
        prepared, rows = plan.inputs(request.inputs)
        started = time.perf_counter()
        outputs = await self._answer(served, prepared, rows)
        answer_id = request.id
        if self._tap is not None:
            answer_id = answer_id or request_id or str(uuid.uuid4())
            self._tap.record(served, prepared, outputs, started, answer_id)
        return InferResult(
            model_name=served.name,
            model_version=str(served.version),
            outputs=plan.encode(outputs, request.outputs),
            id=answer_id,
        )

    async def predict(
        self,
        name: str | None,
        version: str | None,
        data: pd.DataFrame | np.ndarray | Mapping[str, Any],
        header: Lookup | None = None,
        request_id: str | None = None,
    ) -> tuple[Served, Outputs]:
        """Table- or array-shaped inference (MLflow `/invocations`, KServe v1), through the
        same batcher as `infer`. For a deployment, Served names the version that answered
        and `request_id` (default: a new uuid4) is the id its logged prediction gets."""
        if not self._warm:
            await self._wait_started()
        target = name or self.default_model
        routed = self._routed
        if routed is not None and routed.serves(target):
            if version is not None:
                raise InvalidArgument(_VERSIONED.format(name=target))
            return await routed.predict(target, data, header, request_id)
        served = self.host.get(target, version)
        prepared, rows = served.plan.prepare(data)
        started = time.perf_counter()
        outputs = await self._answer(served, prepared, rows)
        if self._tap is not None:
            self._tap.record(served, prepared, outputs, started, request_id or str(uuid.uuid4()))
        return served.served, outputs

    async def _answer(self, served: ServedModel, prepared: Prepared, rows: int) -> Outputs:
        """The version's full outputs: from the response cache when one is configured and
        holds them (skipping the batcher), else from the model, stored when it succeeds."""
        cache = self.cache
        if cache is None:
            return await served.infer(prepared, rows)
        key = cache_key(served.name, served.version, prepared)
        if key is None:  # an input type the cache cannot key
            return await served.infer(prepared, rows)
        outputs = await cache.get(key)
        if self.metrics is not None:
            result = CACHE_MISS if outputs is None else CACHE_HIT
            self.metrics.cache_lookup(served.name, str(served.version), result)
        if outputs is None:
            outputs = await served.infer(prepared, rows)
            await cache.put(key, outputs)
        return outputs
