"""pyfunc flavor: user Python code behind `shipyard.PythonModel`.

Only a reference to the class is stored ("module:QualName"), never a pickle: the class must
be importable where the model is served. Artifacts (local files the model needs) are copied
into the version and handed back to `load` as paths.
"""

from __future__ import annotations

import abc
import importlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.core.refs import check_name
from shipyard.runtimes.base import PRIMARY_OUTPUT, ModelInput, Outputs, Saved

ARTIFACTS_DIR = "artifacts"


@dataclass(frozen=True)
class ModelContext:
    """What a PythonModel gets at load and predict time."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


class PythonModel(abc.ABC):
    """Subclass this, define `predict` (and `load` if the model needs set-up).

    Set `artifacts = {"name": "path/to/file"}` on the instance to bundle files with the model.
    The class is re-created with no arguments where it is served.
    """

    artifacts: dict[str, str | Path]

    def load(self, context: ModelContext) -> None:  # noqa: B027 - optional hook
        """Prepare the model (read artifacts, warm caches); default: nothing."""

    @abc.abstractmethod
    def predict(self, context: ModelContext, inputs: ModelInput) -> Any:
        """Return an ndarray, list, Series, DataFrame or dict of arrays, one row per input."""


def entry_point(cls: type) -> str:
    """'module:QualName' for an importable class, else FailedPrecondition saying why."""
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise FailedPrecondition(
            f"{cls.__qualname__} is defined in __main__ or inside a function; the class must "
            "be importable from a module so it can be loaded where the model is served"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def import_entry(entry: str) -> type[PythonModel]:
    module_name, _, qualname = entry.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise FailedPrecondition(f"cannot import the model class {entry}: {exc}") from None
    if not (isinstance(target, type) and issubclass(target, PythonModel)):
        raise FailedPrecondition(f"{entry} is not a shipyard.PythonModel subclass")
    return target


def as_outputs(result: Any) -> Outputs:
    """Normalise what a user's predict returned to named arrays ("predict" first)."""
    if isinstance(result, pd.DataFrame):
        named = {str(col): result[col].to_numpy() for col in result.columns}
        first = result.to_numpy() if result.shape[1] > 1 else result.iloc[:, 0].to_numpy()
        return {PRIMARY_OUTPUT: named.pop(PRIMARY_OUTPUT, first), **named}
    if isinstance(result, Mapping):
        named = {str(key): np.asarray(value) for key, value in result.items()}
        if not named:
            raise InvalidArgument("the model's predict returned an empty dict")
        first = next(iter(named.values()))
        return {PRIMARY_OUTPUT: named.pop(PRIMARY_OUTPUT, first), **named}
    if isinstance(result, pd.Series):
        return {PRIMARY_OUTPUT: result.to_numpy()}
    return {PRIMARY_OUTPUT: np.asarray(result)}


class PyfuncRuntime:
    flavor = "pyfunc"

    def __init__(self, model: PythonModel, context: ModelContext) -> None:
        self._model = model
        self._context = context

    def predict(self, inputs: ModelInput) -> Outputs:
        return as_outputs(self._model.predict(self._context, inputs))


class PyfuncFlavor:
    name = "pyfunc"

    def handles(self, model: object) -> bool:
        return isinstance(model, PythonModel)

    def sniff(self, path: Path) -> bool:
        return False  # pyfunc models come from Python, never from a single file

    def read(self, path: Path, *, trust: bool) -> object:
        raise InvalidArgument("pyfunc models are registered from Python, not read from a file")

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        if not isinstance(model, PythonModel):
            raise InvalidArgument(f"expected a PythonModel, got {type(model).__name__}")
        entry = entry_point(type(model))
        artifacts = _copy_artifacts(getattr(model, "artifacts", None) or {}, directory)
        meta = {"entry": entry, "artifacts": artifacts}
        # The entry point as a file too: a version always has at least one stored file, and
        # the artifact set says on its own which code it needs.
        (directory / ENTRY_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return Saved((ENTRY_FILE, *artifacts.values()), meta)

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> PyfuncRuntime:
        cls = import_entry(str(meta["entry"]))
        artifacts = {name: files[logical] for name, logical in meta.get("artifacts", {}).items()}
        context = ModelContext(artifacts=artifacts, params=dict(meta.get("params", {})))
        model = cls()
        model.load(context)
        return PyfuncRuntime(model, context)


ENTRY_FILE = "python_model.json"


def _copy_artifacts(artifacts: Mapping[str, str | Path], directory: Path) -> dict[str, str]:
    """Copy each artifact file to artifacts/<name>; returns name → logical file name."""
    copied: dict[str, str] = {}
    for name, source in artifacts.items():
        check_name(name, "artifact name")
        path = Path(source)
        if not path.is_file():
            raise InvalidArgument(f"artifact {name!r}: {path} is not a file")
        logical = f"{ARTIFACTS_DIR}/{name}"
        (directory / ARTIFACTS_DIR).mkdir(exist_ok=True)
        shutil.copyfile(path, directory / logical)
        copied[name] = logical
    return copied
