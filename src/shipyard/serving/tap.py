"""The data plane's tap on answered requests: one PredictionEvent each, for the prediction log.

Built on the request path, so it only takes references: a 2-D numeric array input goes as
it is (`MatrixColumns`, named columns over the same array), and other inputs are split into
columns when first read, on the logger's thread (splitting a 30-column DataFrame costs
~1.5 ms, which a request must not pay); nothing is copied or serialized here, and the
emitter's `emit` never blocks (a full queue drops the event and counts it).

Input columns are named as the reference data stored at registration names them
(`codecs.tables.array_columns`), so logged windows compare with the reference directly.
Tensors of more than two dimensions (images, sequences) are left out of the log: one value
per row per column is what drift and performance work on.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from shipyard.codecs.tables import array_columns
from shipyard.core.events import (
    NUMERIC_KINDS,
    Column,
    EventEmitter,
    MatrixColumns,
    PredictionEvent,
)
from shipyard.core.signatures import Prepared, Signature
from shipyard.runtimes.base import Outputs
from shipyard.serving.served import ServedModel


class EventTap:
    def __init__(self, emitter: EventEmitter) -> None:
        self._emitter = emitter

    def record(
        self,
        served: ServedModel,
        prepared: Prepared,
        outputs: Outputs,
        started: float,
        request_id: str,
        deployment: str | None = None,
    ) -> None:
        """Hand the event of one answered request to the emitter; `started` is the
        `time.perf_counter()` reading taken before the model was asked."""
        latency_ms = (time.perf_counter() - started) * 1000.0
        self._emitter.emit(
            PredictionEvent(
                request_id=request_id,
                model=served.name,
                version=served.version,
                at=datetime.now(UTC),
                inputs=logged_inputs(prepared, served.signature),
                outputs={name: value for name, value in outputs.items() if value.ndim <= 2},
                latency_ms=latency_ms,
                deployment=deployment,
            )
        )


def logged_inputs(prepared: Prepared, signature: Signature | None) -> Mapping[str, Column]:
    """What the log keeps of a request's input: the matrix itself when it is one numeric
    array of one or two dimensions, else its columns worked out when first read."""
    if not (
        isinstance(prepared, np.ndarray)
        and prepared.ndim in (1, 2)
        and prepared.dtype.kind in NUMERIC_KINDS
    ):
        return LazyColumns(prepared, signature)
    matrix = prepared.reshape(len(prepared), 1) if prepared.ndim == 1 else prepared
    single = signature.inputs[0].name if signature and len(signature.inputs) == 1 else None
    names, positions = _names(single, matrix.shape[1])
    return MatrixColumns(names, positions, matrix)


@functools.lru_cache(maxsize=256)
def _names(single: str | None, width: int) -> tuple[tuple[str, ...], Mapping[str, int]]:
    names = tuple(array_columns(single, width))
    return names, {name: i for i, name in enumerate(names)}


class LazyColumns(Mapping[str, Column]):
    """`input_columns(prepared, signature)`, computed on first read and kept. The prepared
    input must not change after the request (the data plane never mutates it)."""

    __slots__ = ("_columns", "_prepared", "_signature")

    def __init__(self, prepared: Prepared, signature: Signature | None) -> None:
        self._prepared = prepared
        self._signature = signature
        self._columns: dict[str, Column] | None = None

    def _get(self) -> dict[str, Column]:
        if self._columns is None:
            self._columns = input_columns(self._prepared, self._signature)
        return self._columns

    def __getitem__(self, name: str) -> Column:
        return self._get()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def input_columns(prepared: Prepared, signature: Signature | None) -> dict[str, Column]:
    """One column (a sequence with a value per row) per input feature."""
    if isinstance(prepared, pd.DataFrame):
        return {str(name): prepared[name].to_numpy() for name in prepared.columns}
    if isinstance(prepared, np.ndarray):
        single = signature.inputs[0].name if signature and len(signature.inputs) == 1 else None
        return _array_columns(single, prepared)
    columns: dict[str, Column] = {}
    for name, array in prepared.items():
        if array.ndim == 1:
            columns[name] = array
        else:
            columns.update(_array_columns(name, array))
    return columns


def _array_columns(name: str | None, array: np.ndarray) -> dict[str, Column]:
    if array.ndim > 2:
        return {}
    matrix = array.reshape(len(array), 1) if array.ndim == 1 else array
    names = array_columns(name, matrix.shape[1])
    return {column: matrix[:, i] for i, column in enumerate(names)}
