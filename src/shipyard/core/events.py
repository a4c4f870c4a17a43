"""Prediction events and the small interfaces that carry them across layers.

The data plane (serving) builds one `PredictionEvent` per request and hands it to an
`EventEmitter`; monitoring implements the emitter (a bounded, non-blocking logger) and the
`Sink`s it writes to; the app wires the two. Serving therefore only imports this module.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

# KServe's payload-logging convention (protocols.md): consumers join on the request id.
RESPONSE_EVENT_TYPE = "org.kubeflow.serving.inference.response"

# One value per row of the request: a list, or the request's own numpy array (no copy on the
# request path; the logger converts it on its thread, so it must not be mutated afterwards).
Column: TypeAlias = Sequence[Any] | npt.NDArray[np.generic]


def _process_prefix() -> str:
    return uuid.uuid4().hex[:16]


_prefix = _process_prefix()
_counter = itertools.count()
# A forked worker must not repeat its parent's ids.
os.register_at_fork(after_in_child=lambda: globals().update(_prefix=_process_prefix()))


def new_event_id() -> str:
    """Unique without a system call per request: a random per-process prefix and a counter
    (uuid4 reads os.urandom each time, several microseconds on the request path)."""
    return f"{_prefix}{next(_counter):016x}"


# numpy kinds the log keeps as arrays until written: float, signed int, bool (the types lists of
# Python values gave: float64, int64, bool). Anything else becomes Python values.
NUMERIC_KINDS = frozenset("fib")


class MatrixColumns(Mapping[str, Column]):
    """The columns of a request's 2-D numeric input, by name, without splitting it: the data
    plane hands this to the log (no work on the request path), and the Parquet writer
    concatenates the matrices of a whole batch at once instead of one array per column per
    request. `positions` maps each name to its column and is shared between requests."""

    __slots__ = ("matrix", "names", "positions")

    def __init__(
        self, names: tuple[str, ...], positions: Mapping[str, int], matrix: npt.NDArray[Any]
    ) -> None:
        self.names = names
        self.positions = positions
        self.matrix = matrix

    def __getitem__(self, name: str) -> Column:
        return self.matrix[:, self.positions[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionEvent:
    """One answered request. `inputs`/`outputs` map a column or output name to its values,
    one per row of the request. Before storage the logger samples and scrubs `inputs` and
    replaces `subject` (a business key, e.g. a customer id) by its keyed digest."""

    request_id: str
    model: str
    version: int
    at: datetime  # timezone-aware UTC
    inputs: Mapping[str, Column]
    outputs: Mapping[str, Column]
    latency_ms: float
    deployment: str | None = None
    subject: str | None = None
    event_id: str = field(default_factory=new_event_id)


@runtime_checkable
class EventEmitter(Protocol):
    """What the data plane calls once per answered request: must never block or raise."""

    def emit(self, event: PredictionEvent) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Where batches of scrubbed events are stored (files, a table, a broker). `write` may
    raise; the logger counts the batch as dropped for this sink and carries on."""

    name: str

    def write(self, events: Sequence[PredictionEvent]) -> None: ...

    def close(self) -> None: ...
