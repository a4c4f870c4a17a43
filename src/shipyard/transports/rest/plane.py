"""What the REST transport needs from the data plane (serving.dataplane.DataPlane fits it).

A Protocol rather than the class itself so that router and error tests run with a fake plane
and no models (STYLE §7: transports depend on one small abstraction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from shipyard.core.tensors import InferRequest, InferResult
from shipyard.serving.routing import Lookup
from shipyard.serving.types import ModelMetadata, RepositoryEntry, Served, ServerMetadata


class Plane(Protocol):
    @property
    def default_model(self) -> str: ...

    def live(self) -> bool: ...

    def ready(self) -> bool: ...

    def model_ready(self, name: str, version: str | None = None) -> bool: ...

    def server_metadata(self) -> ServerMetadata: ...

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata: ...

    def repository_index(self) -> Sequence[RepositoryEntry]: ...

    async def load(self, name: str) -> None: ...

    async def unload(self, name: str) -> None: ...

    async def infer(
        self, request: InferRequest, header: Lookup | None = None, request_id: str | None = None
    ) -> InferResult: ...

    async def predict(
        self,
        name: str | None,
        version: str | None,
        data: Any,
        header: Lookup | None = None,
        request_id: str | None = None,
    ) -> tuple[Served, dict[str, np.ndarray]]: ...


class RequestObserver(Protocol):
    """Where per-request outcomes go (serving.metrics.ServingMetrics fits it)."""

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None: ...
