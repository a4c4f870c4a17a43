"""LightGBM flavor: native text model, never pickle.

LightGBM's sklearn wrappers cannot be rebuilt from the text format, so the runtime redoes
what `LGBMClassifier.predict_proba`/`predict` do on top of the Booster: binary scores become
two columns [1 - p, p], and labels are `classes_[argmax]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import (
    PRIMARY_OUTPUT,
    PROBA_OUTPUT,
    ModelInput,
    Outputs,
    Saved,
    as_frame,
    classes_from_meta,
    classes_meta,
    is_kind,
    require,
    unreadable,
)
from shipyard.runtimes.probe import canonical

MODEL_FILE = "model.txt"
SUFFIXES = frozenset({".txt", ".lgb", ".lgbm", ".model"})
_MAGIC = b"tree\n"
# LightGBM accepts truncated model strings silently, and crashes the process (segfault) on
# some; a complete model has every section marker, and pandas_categorical on the last line.
_MARKERS = ("end of trees", "\nparameters:", "end of parameters", "\npandas_categorical:")


def kind_of(model: object) -> str:
    """'classifier', 'regressor' (sklearn wrappers) or 'booster'."""
    if type(model).__name__ == "Booster":
        return "booster"
    return "classifier" if hasattr(model, "predict_proba") else "regressor"


def booster_of(model: Any) -> Any:
    return model if kind_of(model) == "booster" else model.booster_


def objective_of(text: str) -> str:
    """The objective line of the model header (e.g. 'binary sigmoid:1')."""
    start = text.find("\nobjective=")
    if start < 0:
        return ""
    start += len("\nobjective=")
    return text[start : text.find("\n", start)]


def _check_structure(text: str, name: str) -> None:
    complete = all(marker in text for marker in _MARKERS) and text.rstrip().endswith(("null", "]"))
    if not text.startswith(_MAGIC.decode()) or not complete:
        raise InvalidArgument(
            f"{name} is not a complete LightGBM text model (corrupt or truncated?)",
            details={"path": name, "format": "LightGBM"},
        )


def parse_file(path: Path) -> bytes:
    """The user's file parsed in a child (`canonical`), written back by LightGBM itself."""
    booster = load_text(path.read_text(encoding="utf-8"), path.name)
    return str(booster.model_to_string()).encode("utf-8")


def load_text(text: str, name: str = MODEL_FILE) -> Any:
    lgb = require("lightgbm", "lightgbm")
    _check_structure(text, name)
    try:
        return lgb.Booster(model_str=text)
    except Exception as exc:  # LightGBMError on malformed sections
        raise unreadable(Path(name), "LightGBM", exc) from None


_KINDS = frozenset({"LGBMModel", "Booster"})  # the native Booster and its sklearn wrappers


class LightGBMRuntime:
    flavor = "lightgbm"

    def __init__(self, booster: Any, kind: str, classes: np.ndarray | None) -> None:
        self._booster = booster
        self._classes = classes if kind == "classifier" else None

    def predict(self, inputs: ModelInput) -> Outputs:
        scores = np.asarray(self._booster.predict(as_frame(inputs), num_threads=1))
        if self._classes is None:
            return {PRIMARY_OUTPUT: scores}
        proba = np.vstack((1.0 - scores, scores)).T if scores.ndim == 1 else scores
        return {
            PRIMARY_OUTPUT: self._classes[np.argmax(proba, axis=1)],
            PROBA_OUTPUT: proba,
        }


class LightGBMFlavor:
    name = "lightgbm"

    def handles(self, model: object) -> bool:
        return is_kind(model, "lightgbm", _KINDS)

    def sniff(self, path: Path) -> bool:
        if path.suffix.lower() not in SUFFIXES:
            return False
        with path.open("rb") as handle:
            return handle.read(len(_MAGIC)) == _MAGIC

    def read(self, path: Path, *, trust: bool) -> object:
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise unreadable(path, "LightGBM", exc) from None
        _check_structure(text, path.name)
        # Crafted text can crash liblightgbm: only a child parses the user's bytes.
        return load_text(canonical(parse_file, path, "LightGBM").decode("utf-8"), path.name)

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        text = str(booster_of(model).model_to_string())
        (directory / MODEL_FILE).write_text(text, encoding="utf-8")
        meta: dict[str, Any] = {
            "kind": kind_of(model),
            "wrapper": type(model).__name__,
            "objective": objective_of(text),
            **classes_meta(model),
        }
        return Saved((MODEL_FILE,), meta)

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> LightGBMRuntime:
        text = files[MODEL_FILE].read_text(encoding="utf-8")
        kind = str(meta.get("kind", "booster"))
        return LightGBMRuntime(load_text(text), kind, classes_from_meta(meta))
