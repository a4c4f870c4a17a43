"""Inference requests and results as wire-free core types.

Transports decode their wire format (OIP JSON, binary tensors, gRPC, MLflow, KServe v1) into
these, the data plane works only on these, and transports encode results back. Tensors are
checked once at decode time: the shape matches the data and the datatype is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import DATATYPES

EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named n-d array. BYTES tensors hold an object array of `bytes`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise InvalidArgument(f"tensor {self.name!r}: unknown datatype {self.datatype!r}")
        if any(d < 0 for d in self.shape):
            raise InvalidArgument(
                f"tensor {self.name!r}: negative dimension in shape {list(self.shape)}"
            )
        if tuple(self.data.shape) != self.shape:
            raise InvalidArgument(
                f"tensor {self.name!r}: shape {list(self.shape)} does not match "
                f"{self.data.size} data elements"
            )

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool = False
    parameters: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class InferRequest:
    """One inference call: which model (and optionally version), inputs, wanted outputs."""

    model: str
    inputs: tuple[Tensor, ...]
    version: str | None = None
    id: str | None = None
    outputs: tuple[RequestedOutput, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    binary_output: bool = False


@dataclass(frozen=True, slots=True)
class InferResult:
    model_name: str
    model_version: str
    outputs: tuple[Tensor, ...]
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
