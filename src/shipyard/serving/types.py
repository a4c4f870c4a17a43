"""What the data plane tells transports about the server and its models (wire-free)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shipyard.core.signatures import TensorSpec


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class ModelState(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One row of the OIP repository index."""

    name: str
    version: str
    state: ModelState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Served:
    """Which model version answered a request (for `model_version` and response headers)."""

    name: str
    version: int
