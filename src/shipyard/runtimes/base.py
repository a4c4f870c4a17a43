"""The contract every flavor module implements.

A `Flavor` knows how to recognise a model (an in-memory object or a file), write it to a
directory in a safe, durable format, and load it back as a `Runtime`. A `Runtime` is a loaded
model that maps prepared inputs to named output arrays. Features such as batching, metrics and
signature enforcement wrap runtimes from outside; runtimes stay small.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument

# Inputs reach a runtime already checked against the signature: a DataFrame for columnar
# models, an ndarray for tensor models, or a mapping of named arrays for multi-input models.
ModelInput = pd.DataFrame | np.ndarray | Mapping[str, np.ndarray]
# Outputs are named arrays with one row per input row. "predict" is always present;
# classifiers add "predict_proba" (n_rows x n_classes) when they can.
Outputs = dict[str, np.ndarray]

PRIMARY_OUTPUT = "predict"
PROBA_OUTPUT = "predict_proba"


@runtime_checkable
class Runtime(Protocol):
    """A loaded model of one flavor."""

    flavor: str

    def predict(self, inputs: ModelInput) -> Outputs: ...


@dataclass(frozen=True, slots=True)
class Saved:
    """What `Flavor.save` wrote: logical file names (relative to the directory) and metadata
    the flavor needs to load them again (class names, classes_, format, ...)."""

    files: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)


class Flavor(Protocol):
    name: str

    def handles(self, model: object) -> bool:
        """True if this flavor can save the in-memory object `model`."""
        ...

    def sniff(self, path: Path) -> bool:
        """True if the file at `path` looks like this flavor's format (cheap, no full load)."""
        ...

    def read(self, path: Path, *, trust: bool) -> object:
        """Read a user's model file into an in-memory object that `save` accepts.

        Raises ShipyardError(INVALID_ARGUMENT) for corrupt/truncated files and
        ShipyardError(FAILED_PRECONDITION) for pickle-based files without `trust`."""
        ...

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        """Write `model` into `directory` (which exists and is empty)."""
        ...

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> Runtime:
        """Load a runtime from the files `save` wrote (logical name -> local path)."""
        ...


def require(module: str, extra: str) -> Any:
    """Import an optional framework lazily, saying which extra installs it when absent."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FailedPrecondition(
            f"{module} is not installed; install shipyard[{extra}]", details={"extra": extra}
        ) from exc


def is_kind(model: object, package: str, class_names: frozenset[str]) -> bool:
    """True if `model` comes from `package` and one of its classes is named in `class_names`
    (a framework's native model or its sklearn wrapper), without importing the framework."""
    names = {cls.__name__ for cls in type(model).__mro__}
    return defined_in(model, package) and bool(names & class_names)


def defined_in(model: object, package: str) -> bool:
    """True if `model`'s class (or a base class) comes from `package`, without importing it."""
    prefix = package + "."
    return any(
        cls.__module__ == package or cls.__module__.startswith(prefix)
        for cls in type(model).__mro__
    )


def unreadable(path: Path, what: str, exc: BaseException) -> InvalidArgument:
    """The error for a corrupt or truncated model file: readable, with the cause's class only."""
    return InvalidArgument(
        f"{path.name} is not a valid {what} file (corrupt or truncated?): {type(exc).__name__}",
        details={"path": path.name, "format": what},
    )


def classes_meta(model: object) -> dict[str, Any]:
    """JSON-able classes_ (values and dtype) so labels come back with the same dtype."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        return {}
    array = np.asarray(classes)
    return {"classes": array.tolist(), "classes_dtype": array.dtype.str}


def classes_from_meta(meta: Mapping[str, Any]) -> np.ndarray | None:
    if "classes" not in meta:
        return None
    return np.asarray(meta["classes"], dtype=np.dtype(meta.get("classes_dtype", "O")))


def as_frame(inputs: ModelInput) -> pd.DataFrame | np.ndarray:
    """Frameworks take a DataFrame or an ndarray; a mapping of columns becomes a DataFrame."""
    if isinstance(inputs, pd.DataFrame | np.ndarray):
        return inputs
    return pd.DataFrame({name: np.asarray(value) for name, value in inputs.items()})
