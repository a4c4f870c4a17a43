"""Load a registered version for prediction, preferring the compiled ONNX artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument, ShipyardError
from shipyard.core.refs import ModelRef
from shipyard.core.signatures import Prepared, Signature
from shipyard.packaging.register import COMPILED_FILE, NATIVE_DIR
from shipyard.registry.models import ModelVersion
from shipyard.registry.reader import RegistryReader
from shipyard.registry.service import Registry
from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT, Outputs, Runtime
from shipyard.runtimes.flavors import get_flavor


class LoadedModel:
    """A model version ready to predict: numpy or pandas in, numpy or pandas out."""

    def __init__(self, version: ModelVersion, runtime: Runtime, *, compiled: bool) -> None:
        self.version = version
        self.runtime = runtime
        self.compiled = compiled
        self.signature = Signature.from_dict(version.signature) if version.signature else None

    def __repr__(self) -> str:
        path = "compiled ONNX" if self.compiled else self.version.flavor
        return f"<LoadedModel {self.version.ref} ({path})>"

    def infer(self, data: object) -> Outputs:
        """All named outputs for `data`, after checking it against the signature."""
        prepared = self.prepare(data)
        try:
            outputs = self.runtime.predict(prepared)
        except ShipyardError:
            raise
        except Exception as exc:  # the framework's own error, reworded for the caller
            raise InvalidArgument(
                f"{self.version.ref} could not score this input: {type(exc).__name__}: {exc}"
            ) from None
        return outputs

    def prepare(self, data: object) -> Prepared:
        if self.signature is not None:
            return self.signature.prepare(data)
        if isinstance(data, pd.DataFrame | np.ndarray | dict):
            return data
        return np.asarray(data)

    def predict(self, data: object) -> np.ndarray | pd.Series | pd.DataFrame:
        return self._shaped(data, self.infer(data)[PRIMARY_OUTPUT], "prediction")

    def predict_proba(self, data: object) -> np.ndarray | pd.Series | pd.DataFrame:
        outputs = self.infer(data)
        if PROBA_OUTPUT not in outputs:
            raise FailedPrecondition(f"{self.version.ref} does not give probabilities")
        return self._shaped(data, outputs[PROBA_OUTPUT], "probability")

    def _shaped(
        self, data: object, values: np.ndarray, name: str
    ) -> np.ndarray | pd.Series | pd.DataFrame:
        """pandas in, pandas out (keeping the caller's index); otherwise numpy."""
        if not isinstance(data, pd.DataFrame):
            return values
        if values.ndim == 1:
            return pd.Series(values, index=data.index, name=name)
        return pd.DataFrame(values.reshape(len(values), -1), index=data.index)


def native_files(registry: RegistryReader, version: ModelVersion) -> dict[str, Path]:
    """The version's native artifacts under the names its flavor's `load` expects."""
    prefix = f"{NATIVE_DIR}/"
    paths = registry.artifact_paths(version)
    return {k.removeprefix(prefix): p for k, p in paths.items() if k.startswith(prefix)}


def load_version(
    registry: Registry, ref: ModelRef | str, *, prefer_compiled: bool = True
) -> LoadedModel:
    version = registry.resolve(ref)
    paths = registry.artifact_paths(version)
    compiled_meta = version.flavor_meta.get("compiled")
    if prefer_compiled and COMPILED_FILE in paths and compiled_meta is not None:
        runtime = get_flavor("onnx").load({"model.onnx": paths[COMPILED_FILE]}, compiled_meta)
        return LoadedModel(version, runtime, compiled=True)
    native = native_files(registry, version)
    runtime = get_flavor(version.flavor).load(native, version.flavor_meta.get("native", {}))
    return LoadedModel(version, runtime, compiled=False)
