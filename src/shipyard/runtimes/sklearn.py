"""scikit-learn flavor: skops (data-only) by default, joblib only with explicit trust.

skops refuses to load types it does not know, including sklearn internals such as
`sklearn.tree._tree.Tree`; we accept the types of an allowlist (sklearn, numpy, scipy.sparse
and plain containers) and refuse everything else by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.runtimes.base import (
    PRIMARY_OUTPUT,
    PROBA_OUTPUT,
    ModelInput,
    Outputs,
    Saved,
    as_frame,
    classes_meta,
    defined_in,
    require,
    unreadable,
)

SKOPS_FILE = "model.skops"
JOBLIB_FILE = "model.joblib"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})
PICKLE_REFUSED = (
    "pickle/joblib files can run arbitrary code when loaded; pass trust=True (CLI: --trust) "
    "only for files you trust"
)

_ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")
_ALLOWED_BUILTINS = frozenset(
    {
        "builtins.bool",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.complex",
        "builtins.dict",
        "builtins.float",
        "builtins.frozenset",
        "builtins.int",
        "builtins.list",
        "builtins.set",
        "builtins.slice",
        "builtins.str",
        "builtins.tuple",
        "builtins.type",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
    }
)
# Inside the allowed packages, names that read files or run code are still refused.
_DENIED_PARTS = ("load", "save", "memmap", "fromfile", "ctypes", "f2py", "testing", "datasets")


def allowed_type(name: str) -> bool:
    """True if skops may construct the type or function `name` from a model file."""
    if name in _ALLOWED_BUILTINS:
        return True
    if not name.startswith(_ALLOWED_PREFIXES):
        return False
    lowered = name.lower()
    return not any(part in lowered for part in _DENIED_PARTS)


def load_skops(path: Path) -> Any:
    """Load a .skops file, accepting only allowlisted types."""
    sio = require("skops.io", "sklearn")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises zip/json/key errors on damaged files
        raise unreadable(path, "skops", exc) from None
    refused = sorted(name for name in untrusted if not allowed_type(name))
    if refused:
        raise FailedPrecondition(
            f"{path.name} contains types outside the sklearn/numpy/scipy allowlist: "
            f"{', '.join(refused)}; register it from Python with trust=True if you trust it",
            details={"types": refused},
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise unreadable(path, "skops", exc) from None


def load_joblib(path: Path) -> Any:
    joblib = require("joblib", "sklearn")
    try:
        return joblib.load(path)
    except Exception as exc:  # unpickling errors come in many classes
        raise unreadable(path, "pickle/joblib", exc) from None


class SklearnRuntime:
    flavor = "sklearn"

    def __init__(self, model: Any) -> None:
        self._model = model
        self._has_proba = hasattr(model, "predict_proba")

    def predict(self, inputs: ModelInput) -> Outputs:
        data = as_frame(inputs)
        outputs = {PRIMARY_OUTPUT: np.asarray(self._model.predict(data))}
        if self._has_proba:
            outputs[PROBA_OUTPUT] = np.asarray(self._model.predict_proba(data))
        return outputs


class SklearnFlavor:
    name = "sklearn"

    def handles(self, model: object) -> bool:
        return defined_in(model, "sklearn") and hasattr(model, "predict")

    def sniff(self, path: Path) -> bool:
        suffix = path.suffix.lower()
        return suffix == ".skops" or suffix in PICKLE_SUFFIXES

    def read(self, path: Path, *, trust: bool) -> object:
        suffix = path.suffix.lower()
        if suffix == ".skops":
            return load_skops(path)
        if suffix in PICKLE_SUFFIXES:
            if not trust:
                raise FailedPrecondition(PICKLE_REFUSED)
            return load_joblib(path)
        raise InvalidArgument(
            f"{path.name}: scikit-learn models are read from .skops (or, with trust, "
            ".pkl/.pickle/.joblib) files"
        )

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        meta: dict[str, Any] = {
            "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
            **classes_meta(model),
        }
        problem = _save_skops(model, directory / SKOPS_FILE)
        if problem is None:
            return Saved((SKOPS_FILE,), {"format": "skops", **meta})
        if not trust:
            raise FailedPrecondition(
                f"{problem}; pass trust=True to save it with joblib (pickle) instead"
            )
        require("joblib", "sklearn").dump(model, directory / JOBLIB_FILE)
        return Saved((JOBLIB_FILE,), {"format": "joblib", **meta})

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> SklearnRuntime:
        if meta.get("format") == "joblib":
            return SklearnRuntime(load_joblib(files[JOBLIB_FILE]))
        return SklearnRuntime(load_skops(files[SKOPS_FILE]))


def _save_skops(model: object, path: Path) -> str | None:
    """Write `model` with skops; return why it cannot be stored data-only, or None."""
    sio = require("skops.io", "sklearn")
    try:
        sio.dump(model, path)
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises TypeError and friends on unknown objects
        path.unlink(missing_ok=True)
        return f"skops cannot serialize {type(model).__name__} ({type(exc).__name__}: {exc})"
    refused = sorted(name for name in untrusted if not allowed_type(name))
    if refused:
        path.unlink()
        return f"the model uses types outside the skops allowlist: {', '.join(refused)}"
    return None
