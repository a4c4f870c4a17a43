"""One loaded, warmed-up model version behind its own batcher.

`load_served` runs in a worker thread: load through the injected loader, then warm up with a
few rows (the version's reference data if it has usable data, else zeros and empty strings
shaped by the signature). A version that cannot score its reference data, returns the wrong
number of rows, or fails on synthetic numeric rows is a failed load: the host keeps the
previous version serving (security.md rule 7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument, ShipyardError
from shipyard.core.refs import ModelRef
from shipyard.core.signatures import Prepared, Signature, TensorSpec, numpy_dtype
from shipyard.registry.models import ModelVersion
from shipyard.registry.service import Registry
from shipyard.runtimes.base import Outputs, Runtime
from shipyard.serving.batcher import Batcher, BatchSettings
from shipyard.serving.convert import ConversionPlan
from shipyard.serving.merge import rows_of
from shipyard.serving.metrics import ModelMetrics, ServingMetrics
from shipyard.serving.types import ModelMetadata, Served

logger = logging.getLogger(__name__)

# packaging.register.REFERENCE_FILE: the layer contract keeps serving from importing packaging.
REFERENCE_ARTIFACT = "reference.parquet"
WARMUP_ROWS = 4


class Loaded(Protocol):
    """What serving needs of a loaded version (packaging.load.LoadedModel satisfies it)."""

    @property
    def version(self) -> ModelVersion: ...

    @property
    def signature(self) -> Signature | None: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def compiled(self) -> bool: ...

    def prepare(self, data: object) -> Prepared: ...


# packaging.load.load_version fits: (registry, ref) -> LoadedModel.
Loader = Callable[[Registry, ModelRef], Loaded]


@dataclass(frozen=True, slots=True)
class Warm:
    """A loaded version and the outputs of its warm-up (None when it had no signature)."""

    loaded: Loaded
    outputs: Outputs | None


def load_served(registry: Registry, loader: Loader, name: str, version: int) -> Warm:
    """Load `name:version` and warm it up. Blocking: call it in a worker thread."""
    loaded = loader(registry, ModelRef(name, version=version))
    return Warm(loaded, warm_up(registry, loaded))


def warm_up(registry: Registry, loaded: Loaded) -> Outputs | None:
    signature = loaded.signature
    if signature is None:
        return None
    reference = _reference_input(registry, loaded.version, signature)
    if reference is not None:
        try:
            prepared = loaded.prepare(reference)
        except ShipyardError as exc:
            logger.info("reference data of %s does not fit its signature: %s", loaded, exc)
        else:
            return _score(loaded, prepared, "its reference data")
    prepared = loaded.prepare(synthetic_input(signature))
    if all(s.numeric for s in signature.inputs):
        return _score(loaded, prepared, "zeros shaped by its signature")
    try:  # empty strings may be unknown categories: not a reason to refuse the version
        return _score(loaded, prepared, "synthetic rows")
    except ShipyardError as exc:
        logger.info("warm-up of %s skipped: %s", loaded.version.ref, exc)
        return None


def _score(loaded: Loaded, prepared: Prepared, what: str) -> Outputs:
    ref = loaded.version.ref
    try:
        outputs = loaded.runtime.predict(prepared)
    except Exception as exc:
        raise InvalidArgument(
            f"{ref} cannot score {what}: {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    rows = rows_of(prepared)
    for name, array in outputs.items():
        if len(array) != rows:
            raise InvalidArgument(f"{ref} returned {len(array)} rows of {name!r} for {rows}")
    return outputs


def _reference_input(
    registry: Registry, version: ModelVersion, signature: Signature
) -> object | None:
    if REFERENCE_ARTIFACT not in version.artifacts:
        return None
    path = registry.artifact_paths(version)[REFERENCE_ARTIFACT]
    frame = pd.read_parquet(path).head(WARMUP_ROWS)
    if signature.columnar:
        return frame
    if len(signature.inputs) == 1 and len(signature.inputs[0].shape) == 2:
        return frame.to_numpy()
    return None


def synthetic_input(signature: Signature, rows: int = 2) -> object:
    """Zeros for numbers and empty strings for BYTES, shaped by the signature."""

    def fill(spec: TensorSpec) -> np.ndarray:
        shape = (rows, *(d if d > 0 else 1 for d in spec.shape[1:]))
        if spec.numeric:
            return np.zeros(shape, numpy_dtype(spec.datatype))
        return np.full(shape, "", dtype=object)

    if signature.columnar:
        return pd.DataFrame({s.name: fill(s).reshape(-1) for s in signature.inputs})
    if len(signature.inputs) == 1:
        return fill(signature.inputs[0])
    return {s.name: fill(s) for s in signature.inputs}


def platform_of(loaded: Loaded) -> str:
    if loaded.compiled or loaded.version.flavor == "onnx":
        return "onnxruntime"
    return f"shipyard-{loaded.version.flavor}"


class ServedModel:
    """A version that answers requests: its batcher, conversion plan and metadata."""

    def __init__(
        self, warm: Warm, batch: BatchSettings, metrics: ServingMetrics | None = None
    ) -> None:
        loaded = warm.loaded
        self.loaded = loaded
        self.name = loaded.version.name
        self.version = loaded.version.version
        self.served = Served(self.name, self.version)
        signature = loaded.signature
        if signature is not None and not signature.outputs and warm.outputs:
            signature = signature.with_outputs(warm.outputs)
        self.signature = signature
        self.plan = ConversionPlan(signature, loaded.prepare)
        self.metadata = ModelMetadata(
            name=self.name,
            versions=(str(self.version),),
            platform=platform_of(loaded),
            inputs=signature.inputs if signature else (),
            outputs=signature.outputs if signature else (),
        )
        self._metrics: ModelMetrics | None = (
            metrics.model(self.name, str(self.version)) if metrics else None
        )
        self.batcher = Batcher(
            loaded.runtime.predict, batch, name=loaded.version.ref, metrics=self._metrics
        )
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<ServedModel {self.name}:{self.version}>"

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def infer(self, prepared: Prepared, rows: int) -> Outputs:
        self._in_flight += 1
        if self._metrics is not None:
            self._metrics.started()
        try:
            return await self.batcher.submit(prepared, rows)
        finally:
            self._in_flight -= 1
            if self._metrics is not None:
                self._metrics.finished()
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request is inside this version."""
        while self._in_flight:
            if self._idle is None or self._idle.is_set():
                self._idle = asyncio.Event()
            await self._idle.wait()

    async def close(self) -> None:
        """Answer everything already submitted, then stop the batcher."""
        await self.wait_idle()
        await self.batcher.close()
