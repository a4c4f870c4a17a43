"""XGBoost flavor: native UBJ (saved) or JSON (read), never pickle.

The sklearn wrappers are rebuilt from the same bytes with `load_model`, so labels and
probabilities are exactly what the user's object returned.
"""

from __future__ import annotations

import json
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
    classes_meta,
    is_kind,
    require,
    unreadable,
)
from shipyard.runtimes.probe import canonical

MODEL_FILE = "model.ubj"
SUFFIXES = frozenset({".json", ".ubj"})
_HEAD = 4096
_WRAPPERS = {"classifier": "XGBClassifier", "regressor": "XGBRegressor"}


def _xgb() -> Any:
    return require("xgboost", "xgboost")


def kind_of(model: object) -> str:
    """'classifier', 'regressor' (sklearn wrappers) or 'booster'."""
    if hasattr(model, "get_booster"):
        return "classifier" if hasattr(model, "predict_proba") else "regressor"
    return "booster"


def booster_of(model: Any) -> Any:
    return model.get_booster() if hasattr(model, "get_booster") else model


def objective_of(booster: Any) -> str:
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


def load_raw(raw: bytes, kind: str, name: str = MODEL_FILE) -> Any:
    """Booster or sklearn wrapper from JSON/UBJ bytes; damaged bytes → InvalidArgument."""
    xgb = _xgb()
    model = getattr(xgb, _WRAPPERS[kind])() if kind in _WRAPPERS else xgb.Booster()
    try:
        model.load_model(bytearray(raw))
    except Exception as exc:  # XGBoostError, or bad_alloc on truncated UBJ
        raise unreadable(Path(name), "XGBoost", exc) from None
    booster = booster_of(model)
    booster.set_param({"nthread": 1})
    return model


def parse_file(path: Path) -> bytes:
    """The user's file parsed in a child (`canonical`), written back as XGBoost's own UBJ."""
    return bytes(load_raw(path.read_bytes(), "booster", path.name).save_raw("ubj"))


_KINDS = frozenset({"XGBModel", "Booster"})  # the native Booster and its sklearn wrappers


class XGBoostRuntime:
    flavor = "xgboost"

    def __init__(self, model: Any, kind: str) -> None:
        self._model = model
        self._kind = kind
        self._dmatrix = _xgb().DMatrix

    def predict(self, inputs: ModelInput) -> Outputs:
        data = as_frame(inputs)
        if self._kind == "booster":
            return {PRIMARY_OUTPUT: np.asarray(self._model.predict(self._dmatrix(data)))}
        outputs = {PRIMARY_OUTPUT: np.asarray(self._model.predict(data))}
        if self._kind == "classifier":
            outputs[PROBA_OUTPUT] = np.asarray(self._model.predict_proba(data))
        return outputs


class XGBoostFlavor:
    name = "xgboost"

    def handles(self, model: object) -> bool:
        return is_kind(model, "xgboost", _KINDS)

    def sniff(self, path: Path) -> bool:
        if path.suffix.lower() not in SUFFIXES:
            return False
        with path.open("rb") as handle:
            return b"learner" in handle.read(_HEAD)

    def read(self, path: Path, *, trust: bool) -> object:
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise InvalidArgument(f"{path.name}: XGBoost models are read from .json or .ubj files")
        if suffix == ".json":  # a readable refusal before a child is spawned
            _check_json(path, path.read_bytes())
        # Damaged UBJ can crash libxgboost: only a child parses the user's bytes.
        return load_raw(canonical(parse_file, path, "XGBoost"), "booster", path.name)

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        booster = booster_of(model)
        (directory / MODEL_FILE).write_bytes(bytes(booster.save_raw("ubj")))
        meta: dict[str, Any] = {
            "kind": kind_of(model),
            "wrapper": type(model).__name__,
            "objective": objective_of(booster),
            **classes_meta(model),
        }
        if hasattr(model, "n_classes_"):
            meta["n_classes"] = int(model.n_classes_)
        return Saved((MODEL_FILE,), meta)

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> XGBoostRuntime:
        kind = str(meta.get("kind", "booster"))
        return XGBoostRuntime(load_raw(files[MODEL_FILE].read_bytes(), kind), kind)


def _check_json(path: Path, raw: bytes) -> None:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise unreadable(path, "XGBoost JSON", exc) from None
    if not isinstance(document, dict) or "learner" not in document:
        raise InvalidArgument(f"{path.name} is JSON but not an XGBoost model (no 'learner' key)")
