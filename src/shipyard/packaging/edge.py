"""Edge export: one ONNX file for devices, int8-quantized where that pays, with a report.

`shipyard export REF --target edge -o DIR [--quantize dynamic|none] [--min-agreement 0.99]`
writes DIR/model.onnx and DIR/edge.json (inputs and outputs, the runtime's output mapping,
sizes, single-row latency and parity). The source is the version's compiled ONNX artifact (or
its native file for the onnx flavor), whose parity with the native model was checked at
registration. Dynamic quantization (onnxruntime.quantization, int8 weights) applies to ops
with weight matrices (MatMul, Conv, ...): an MLP shrinks, a tree ensemble has nothing to
quantize and is exported as fp32, saying so. A quantized model is written only if it agrees
with the fp32 model on the sample rows at least `min_agreement` of the time.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument
from shipyard.core.refs import ModelRef
from shipyard.core.signatures import Signature
from shipyard.packaging.bundle import replace_directory
from shipyard.packaging.register import COMPILED_FILE, NATIVE_DIR, REFERENCE_FILE
from shipyard.packaging.requirements import shipyard_version
from shipyard.registry.models import ModelVersion, VersionStatus
from shipyard.registry.reader import RegistryReader
from shipyard.runtimes.base import PRIMARY_OUTPUT, Outputs, Runtime
from shipyard.runtimes.flavors import get_flavor

FORMAT = "shipyard-edge/1"
MODEL_FILE = "model.onnx"
REPORT_FILE = "edge.json"
DEFAULT_MIN_AGREEMENT = 0.99
MAX_SAMPLE_ROWS = 10_000
LATENCY_RUNS = 200
# Ops onnxruntime's dynamic quantization gives int8 weights (its IntegerOps registry minus the
# ops that are only quantized when a neighbour is).
DYNAMIC_OPS = frozenset({"MatMul", "Conv", "Attention", "LSTM", "EmbedLayerNormalization"})
# A regression output "agrees" when within this relative (and absolute) tolerance.
VALUE_RTOL, VALUE_ATOL = 1e-2, 1e-3


class Quantize(enum.StrEnum):
    dynamic = "dynamic"
    none = "none"


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    quantize: Quantize = Quantize.dynamic
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    sample: object = None  # rows for parity; default: the version's reference data

    def check(self) -> None:
        if not isinstance(self.quantize, Quantize):
            raise InvalidArgument(f"quantize must be one of {[q.value for q in Quantize]}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidArgument(f"--min-agreement must be in [0, 1], got {self.min_agreement}")


@dataclass(frozen=True, slots=True)
class Parity:
    """How the exported model's answers compare with the fp32 model's on `rows` rows."""

    rows: int
    agreement: float  # labels equal (classifiers) or values within tolerance (regressors)
    measure: str
    max_abs_diff: dict[str, float]
    mean_abs_diff: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "agreement": self.agreement,
            "measure": self.measure,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
        }


def _resolve_ready(registry: RegistryReader, ref: ModelRef | str) -> ModelVersion:
    version = registry.resolve(ref)
    if version.status is not VersionStatus.READY:
        raise FailedPrecondition(f"{version.ref} is {version.status.value}, not READY")
    return version


def onnx_source(registry: RegistryReader, version: ModelVersion) -> tuple[Path, dict[str, Any]]:
    """The version's ONNX file and the onnx runtime's meta for it."""
    paths = registry.artifact_paths(version)
    compiled_meta = version.flavor_meta.get("compiled")
    if COMPILED_FILE in paths and compiled_meta is not None:
        return paths[COMPILED_FILE], dict(compiled_meta)
    native = paths.get(f"{NATIVE_DIR}/{MODEL_FILE}")
    if version.flavor == "onnx" and native is not None:
        return native, dict(version.flavor_meta.get("native", {}))
    status = (version.compiled or {}).get("status", "not compiled")
    raise FailedPrecondition(
        f"{version.ref} has no ONNX form (flavor {version.flavor}, compiled: {status}); "
        "edge export needs a model compiled to ONNX at registration or an ONNX model"
    )


def quantizable_ops(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted({node.op_type for node in graph.node} & DYNAMIC_OPS)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_advice() -> Iterator[None]:
    """onnxruntime.quantization logs a generic tip on the root logger at every call."""
    advice = _DropAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_advice():
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:  # onnxruntime/onnx raise their own error types
            raise FailedPrecondition(f"int8 quantization failed: {exc}") from None


def _io(values: Any) -> list[dict[str, Any]]:
    described = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param or None
                 for d in tensor.shape.dim]  # fmt: skip
        described.append({"name": value.name, "elem_type": int(tensor.elem_type), "shape": shape})
    return described


def graph_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Input and output names, ONNX element types and shapes (None or a name: any size)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {"inputs": _io(graph.input), "outputs": _io(graph.output)}


def _rows(values: np.ndarray) -> np.ndarray:
    return values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(-1, 1)


def compare(reference: Outputs, candidate: Outputs) -> Parity:
    """Per-row agreement of the primary output; max and mean |diff| of every float output."""
    expected, got = np.asarray(reference[PRIMARY_OUTPUT]), np.asarray(candidate[PRIMARY_OUTPUT])
    if expected.shape != got.shape:
        raise FailedPrecondition(
            f"the quantized model's output shape {got.shape} differs from {expected.shape}"
        )
    if expected.dtype.kind == "f":
        close = np.isclose(got, expected, rtol=VALUE_RTOL, atol=VALUE_ATOL)
        measure = f"values within rtol {VALUE_RTOL} / atol {VALUE_ATOL}"
    else:
        close, measure = got == expected, "labels equal"
    agreement = float(np.mean(_rows(close).all(axis=1))) if len(expected) else 1.0
    diffs = {
        name: np.abs(np.asarray(candidate[name], np.float64) - np.asarray(values, np.float64))
        for name, values in reference.items()
        if name in candidate and np.asarray(values).dtype.kind == "f" and np.size(values)
    }
    largest = {name: float(d.max()) for name, d in diffs.items()}
    mean = {name: float(d.mean()) for name, d in diffs.items()}
    return Parity(len(expected), agreement, measure, largest, mean)


def _sample(registry: RegistryReader, version: ModelVersion, sample: object) -> object:
    if sample is None and REFERENCE_FILE in version.artifacts:
        sample = pd.read_parquet(registry.artifact_paths(version)[REFERENCE_FILE])
    if sample is None:
        return None
    if isinstance(sample, pd.DataFrame | np.ndarray) and len(sample) > MAX_SAMPLE_ROWS:
        sample = sample[:MAX_SAMPLE_ROWS]
    if version.signature:
        return Signature.from_dict(version.signature).prepare(sample)
    return sample


def _one_row(prepared: object, index: int) -> object:
    if isinstance(prepared, dict):
        return {k: v[index : index + 1] for k, v in prepared.items()}
    if isinstance(prepared, pd.DataFrame):
        return prepared.iloc[index : index + 1]
    return np.asarray(prepared)[index : index + 1]


def single_row_latency_us(runtime: Runtime, prepared: object, runs: int = LATENCY_RUNS) -> float:
    """Median microseconds of one-row predictions (first row; after a warm-up call)."""
    row = _one_row(prepared, 0)
    runtime.predict(row)  # type: ignore[arg-type]
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        runtime.predict(row)  # type: ignore[arg-type]
        timings.append(time.perf_counter() - start)
    return float(np.median(timings) * 1e6)


def _check_output(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise Conflict(f"{out} already exists (pass --overwrite to replace it)")
    if out.is_symlink() or not out.is_dir():
        raise FailedPrecondition(f"{out} is not a directory; refusing to replace it")
    if any(out.iterdir()) and not (out / REPORT_FILE).is_file():
        raise FailedPrecondition(
            f"{out} is a non-empty directory without {REPORT_FILE}; refusing to replace it"
        )


def _plan(options: EdgeOptions, source: Path) -> tuple[bool, str]:
    """Whether to quantize, and why (not)."""
    if options.quantize is Quantize.none:
        return False, "not requested (--quantize none)"
    ops = quantizable_ops(source)
    if not ops:
        return False, (
            "skipped: the graph has no MatMul/Conv/Attention/LSTM weights to quantize "
            "(tree ensembles and linear ONNX-ML operators stay fp32); exported fp32"
        )
    return True, f"dynamic int8 weights on {', '.join(ops)}"


def _measure(
    fp32: Path, exported: Path, meta: dict[str, Any], prepared: object, quantized: bool
) -> tuple[Parity | None, dict[str, float]]:
    onnx_flavor = get_flavor("onnx")
    reference = onnx_flavor.load({MODEL_FILE: fp32}, meta)
    latency = {"fp32": single_row_latency_us(reference, prepared)}
    if not quantized:  # the exported file is the fp32 one: nothing to compare
        return None, latency
    candidate = onnx_flavor.load({MODEL_FILE: exported}, meta)
    parity = compare(reference.predict(prepared), candidate.predict(prepared))  # type: ignore[arg-type]
    latency["int8"] = single_row_latency_us(candidate, prepared)
    return parity, latency


def export_edge(
    registry: RegistryReader,
    ref: ModelRef | str,
    out: Path | str,
    *,
    options: EdgeOptions | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write DIR/model.onnx and DIR/edge.json for version `ref`; return the report."""
    options = options or EdgeOptions()
    options.check()
    out = Path(out).absolute()
    _check_output(out, overwrite)
    version = _resolve_ready(registry, ref)
    source, meta = onnx_source(registry, version)
    quantize, reason = _plan(options, source)
    prepared = _sample(registry, version, options.sample)
    if quantize and prepared is None:
        raise FailedPrecondition(
            f"quantizing {version.ref} needs rows to measure agreement on: pass --sample FILE "
            "(or register the version with reference data), or use --quantize none"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging.", dir=out.parent))
    try:
        exported = staging / MODEL_FILE
        if quantize:
            quantize_int8(source, exported)
        else:
            shutil.copyfile(source, exported)
        parity: Parity | None = None
        latency: dict[str, float] = {}
        if prepared is not None:
            parity, latency = _measure(source, exported, meta, prepared, quantize)
        if quantize and parity is not None and parity.agreement < options.min_agreement:
            raise FailedPrecondition(
                f"the int8 model of {version.ref} agrees with the fp32 model on "
                f"{parity.agreement:.2%} of {parity.rows} rows ({parity.measure}), under "
                f"--min-agreement {options.min_agreement:.2%}; nothing written (export fp32 "
                "with --quantize none, or lower --min-agreement knowingly)"
            )
        report = _report(version, source, exported, meta, quantize, reason, parity, latency)
        report["min_agreement"] = options.min_agreement
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        replace_directory(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return report


def _report(
    version: ModelVersion,
    source: Path,
    exported: Path,
    meta: dict[str, Any],
    quantized: bool,
    reason: str,
    parity: Parity | None,
    latency: dict[str, float],
) -> dict[str, Any]:
    data = exported.read_bytes()
    return {
        "format": FORMAT,
        "ref": version.ref,
        "flavor": version.flavor,
        "precision": "int8" if quantized else "fp32",
        "quantization": {"applied": quantized, "reason": reason},
        "model": {"file": MODEL_FILE, "sha256": hashlib.sha256(data).hexdigest()},
        "bytes": {"exported": len(data), "fp32": source.stat().st_size},
        **graph_io(exported),
        "runtime_meta": meta,
        "signature": version.signature,
        "parity_vs_fp32": None if parity is None else parity.to_dict(),
        "fp32_vs_native": version.compiled,
        "single_row_latency_us": latency,
        "shipyard_version": shipyard_version(),
    }
