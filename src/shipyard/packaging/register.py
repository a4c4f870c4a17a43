"""Package a model and register it: the one path every registration takes.

Everything that can fail on bad input (flavor, serialisation, signature, the sample, lineage)
runs in a private staging directory before the registry is touched, so a rejected model leaves
no trace. The registry then stores the files durably and flips the version to READY.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.codecs.tables import array_columns, as_frame
from shipyard.core.errors import InvalidArgument, ShipyardError
from shipyard.core.lineage import Lineage
from shipyard.core.refs import check_name
from shipyard.core.signatures import Prepared, Signature, infer_signature
from shipyard.packaging.provenance import build_lineage
from shipyard.registry.models import ModelVersion, VersionSpec
from shipyard.registry.service import Registry
from shipyard.runtimes.base import Flavor, Outputs, Runtime
from shipyard.runtimes.compile import compile_model
from shipyard.runtimes.flavors import flavor_for_object, get_flavor
from shipyard.runtimes.torch import script_module

NATIVE_DIR = "native"
COMPILED_FILE = "compiled/model.onnx"
REFERENCE_FILE = "reference.parquet"
PROFILE_FILE = "reference.profile"
# Turns the stored reference table into bytes kept beside it (monitoring's drift profile:
# packaging cannot import monitoring, so callers that can pass it in).
ReferenceProfiler = Callable[[pd.DataFrame], bytes]


@dataclass(frozen=True, slots=True)
class Registration:
    """What a caller asks for; validated as a whole before anything is written."""

    name: str
    sample_input: object = None
    reference_data: object = None
    tags: Mapping[str, str] | None = None
    description: str | None = None
    params: Mapping[str, Any] | None = None
    metrics: Mapping[str, float] | None = None
    lineage: Lineage | Mapping[str, Any] | None = None
    trust: bool = False
    flavor: str | None = None
    compile: bool = True
    stage: str | None = None  # "candidate": kept out of `latest` until released
    profiler: ReferenceProfiler | None = None  # with reference_data: stored as PROFILE_FILE


def register_model(registry: Registry, model: object, request: Registration) -> ModelVersion:
    check_name(request.name)
    tags = _check_tags(request.tags)
    metrics = _check_metrics(request.metrics)
    flavor = get_flavor(request.flavor) if request.flavor else flavor_for_object(model)
    lineage = build_lineage(request.lineage, creator=registry.actor, cwd=Path.cwd())
    if lineage.parent_version is not None:
        registry.get_version(request.name, lineage.parent_version)  # NotFound if it doesn't exist
    with tempfile.TemporaryDirectory(prefix="shipyard-register-") as tmp:
        staging = Path(tmp)
        files, spec_parts = _package(model, flavor, request, staging)
        spec = VersionSpec(
            flavor=flavor.name,
            description=request.description,
            tags=tags,
            params=dict(request.params or {}),
            metrics=metrics,
            lineage=lineage,
            stage=request.stage,
            **spec_parts,
        )
        return registry.register_version(request.name, files, spec)


def _package(
    model: object, flavor: Flavor, request: Registration, staging: Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    native_dir = staging / NATIVE_DIR
    native_dir.mkdir()
    if flavor.name == "torch" and request.sample_input is not None:
        model = script_module(model, request.sample_input)  # nn.Module -> TorchScript by tracing
    saved = flavor.save(model, native_dir, trust=request.trust)
    files = {f"{NATIVE_DIR}/{name}": native_dir / name for name in saved.files}
    runtime = flavor.load({name: native_dir / name for name in saved.files}, saved.meta)
    parts: dict[str, Any] = {
        "flavor_meta": {"native": saved.meta},
        "signature": None,
        "compiled": None,
    }
    signature: Signature | None = None
    if request.sample_input is not None:
        signature = infer_signature(request.sample_input)
        prepared = signature.prepare(request.sample_input)
        outputs = run_sample(runtime, prepared)
        signature = signature.with_outputs(outputs)
        parts["signature"] = signature.to_dict()
        if request.compile:
            parts["compiled"] = _compile(model, flavor, prepared, runtime, staging, files, parts)
    if request.reference_data is not None:
        files[REFERENCE_FILE] = _write_reference(request.reference_data, signature, staging)
        if request.profiler is not None:
            # Profile the table as stored (column names, dtypes), as monitoring will read it.
            profile = request.profiler(pd.read_parquet(files[REFERENCE_FILE]))
            files[PROFILE_FILE] = staging / PROFILE_FILE
            files[PROFILE_FILE].write_bytes(profile)
    return files, parts


def run_sample(runtime: Runtime, prepared: Prepared) -> Outputs:
    """Predict on the sample; a model that cannot take its own sample is a caller error."""
    try:
        outputs = runtime.predict(prepared)
    except ShipyardError:
        raise
    except Exception as exc:  # any framework error here means the sample doesn't fit the model
        raise InvalidArgument(
            f"the sample does not fit the model: {type(exc).__name__}: {exc}"
        ) from None
    rows = _rows(prepared)
    for name, array in outputs.items():
        if len(array) != rows:
            raise InvalidArgument(
                f"the model returned {len(array)} rows of {name!r} for {rows} input rows"
            )
    return outputs


def _rows(prepared: Prepared) -> int:
    if isinstance(prepared, dict):
        return len(next(iter(prepared.values())))
    return len(prepared)


def _compile(
    model: object,
    flavor: Flavor,
    prepared: Prepared,
    runtime: Runtime,
    staging: Path,
    files: dict[str, Path],
    parts: dict[str, Any],
) -> dict[str, Any]:
    compiled = compile_model(model, flavor.name, prepared, runtime)
    if compiled.onnx is not None and compiled.record.get("status") == "kept":
        path = staging / COMPILED_FILE
        path.parent.mkdir()
        path.write_bytes(compiled.onnx)
        files[COMPILED_FILE] = path
        parts["flavor_meta"]["compiled"] = compiled.meta
    return dict(compiled.record)


def _write_reference(data: object, signature: Signature | None, staging: Path) -> Path:
    if isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        array = np.asarray(data)
        columns = _column_names(signature, array)
        data = as_frame(array, columns)
    if len(data) == 0:
        raise InvalidArgument("reference data has no rows")
    path = staging / REFERENCE_FILE
    frame = data.copy()
    frame.columns = [str(c) for c in frame.columns]
    try:
        frame.to_parquet(path, index=False)
    except Exception as exc:  # pyarrow refuses mixed-type object columns with its own errors
        raise InvalidArgument(f"reference data cannot be stored as Parquet: {exc}") from None
    return path


def _column_names(signature: Signature | None, array: np.ndarray) -> list[str] | None:
    if signature is None or len(signature.inputs) != 1:
        return None
    width = array.shape[1] if array.ndim == 2 else 1
    return array_columns(signature.inputs[0].name, width)


def _check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(f"tags must map strings to strings; got {key!r}: {value!r}")
        check_name(key, "tag key")
        if len(value) > 1000:
            raise InvalidArgument(f"tag {key!r} is longer than 1000 characters")
        result[key] = value
    return result


def _check_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    result: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidArgument(f"metric {key!r} must be a number, got {value!r}")
        result[str(key)] = float(value)
    return result


def load_reference(registry: Registry, version: ModelVersion) -> pd.DataFrame | None:
    """The reference table stored with `version` at registration, or None without one."""
    if REFERENCE_FILE not in version.artifacts:
        return None
    return pd.read_parquet(registry.artifact_paths(version, [REFERENCE_FILE])[REFERENCE_FILE])
