"""Edge export: one ONNX file for devices, int8-quantized where that pays, with a report.

`shipyard export REF --target edge -o DIR [--quantize dynamic|static|none]
[--min-agreement 0.99]` writes DIR/model.onnx, DIR/edge.json (inputs and outputs, the
runtime's output mapping, sizes, single-row latency and parity) and DIR/edge_runner.py (the
device runner, `shipyard.edge`). The source is the version's compiled ONNX artifact (or its
native file for the onnx flavor), whose parity with the native model was checked at
registration.

Quantization (onnxruntime.quantization) applies to ops with weight matrices (MatMul, Conv,
...): an MLP shrinks, a tree ensemble has nothing to quantize and is exported as fp32, saying
so. Dynamic gives int8 weights and quantizes activations at run time; static (QDQ) gives int8
weights and activations, their ranges calibrated (MinMax) on the first CALIBRATION_ROWS sample
rows. A quantized model is written only if it agrees with the fp32 model on the sample rows at
least `min_agreement` of the time.
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

from shipyard import edge as device_runner
from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, ShipyardError
from shipyard.core.refs import ModelRef
from shipyard.core.signatures import Signature
from shipyard.edge import MODEL_FILE, REPORT_FILE, RUNNER_FILE, OnnxModel
from shipyard.packaging.bundle import replace_directory
from shipyard.packaging.load import native_files
from shipyard.packaging.register import COMPILED_FILE, NATIVE_DIR, REFERENCE_FILE
from shipyard.packaging.requirements import shipyard_version
from shipyard.registry.models import ModelVersion, VersionStatus
from shipyard.registry.reader import RegistryReader
from shipyard.runtimes.base import PRIMARY_OUTPUT, Outputs, Runtime
from shipyard.runtimes.compile import compare as compile_parity
from shipyard.runtimes.flavors import get_flavor
from shipyard.runtimes.torch import ONNX_CONVERTER, TorchRuntime, to_onnx

FORMAT = "shipyard-edge/1"
DEFAULT_MIN_AGREEMENT = 0.99
MAX_SAMPLE_ROWS = 10_000
LATENCY_RUNS = 200
# Ops onnxruntime's dynamic quantization gives int8 weights (its IntegerOps registry minus the
# ops that are only quantized when a neighbour is).
DYNAMIC_OPS = frozenset({"MatMul", "Conv", "Attention", "LSTM", "EmbedLayerNormalization"})
# A regression output "agrees" when within this relative (and absolute) tolerance.
VALUE_RTOL, VALUE_ATOL = 1e-2, 1e-3


STATIC_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose"})
CALIBRATION_ROWS = 1_000
CALIBRATION_BATCH = 100


class Quantize(enum.StrEnum):
    dynamic = "dynamic"
    static = "static"
    none = "none"


class Agreement(enum.StrEnum):
    """How a row of the quantized model "agrees" with the fp32 one (the primary output)."""

    auto = "auto"  # labels for labels, argmax for a float matrix (scores), else values
    labels = "labels"  # equal
    argmax = "argmax"  # the same top class: class scores or probabilities
    values = "values"  # every value within VALUE_RTOL / VALUE_ATOL: regression


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    quantize: Quantize = Quantize.dynamic
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    sample: object = None  # rows for parity; default: the version's reference data
    agreement: Agreement = Agreement.auto

    def check(self) -> None:
        if not isinstance(self.quantize, Quantize):
            raise InvalidArgument(f"quantize must be one of {[q.value for q in Quantize]}")
        if not isinstance(self.agreement, Agreement):
            raise InvalidArgument(f"agreement must be one of {[a.value for a in Agreement]}")
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
    """The version's ONNX file and the onnx runtime's meta for it (not for torch models:
    `torch_onnx` converts those at export time)."""
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
        "edge export needs a model compiled to ONNX at registration, an ONNX model or a "
        "torch model"
    )


def torch_onnx(
    registry: RegistryReader, version: ModelVersion, prepared: object, target: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Convert a torch version's TorchScript module to ONNX at `target`, keeping it only if
    it matches the module on the sample rows (the parity rule of registration's compile)."""
    if prepared is None:
        raise FailedPrecondition(
            f"exporting torch model {version.ref} to ONNX needs rows to trace it and check "
            "the conversion on: pass --sample FILE (or register it with reference data)"
        )
    files = native_files(registry, version)
    native = get_flavor("torch").load(files, version.flavor_meta.get("native", {}))
    assert isinstance(native, TorchRuntime)
    try:
        raw, meta = to_onnx(native.module, _slice(prepared, 0, 2))  # type: ignore[arg-type]
    except ShipyardError:
        raise
    except Exception as exc:  # the exporter raises anything from RuntimeError to its own
        raise FailedPrecondition(f"{version.ref} could not be converted to ONNX: {exc}") from None
    target.write_bytes(raw)
    got = get_flavor("onnx").load({MODEL_FILE: target}, meta).predict(prepared)  # type: ignore[arg-type]
    parity = compile_parity(native.predict(prepared), got)  # type: ignore[arg-type]
    if not parity.pop("ok"):
        raise FailedPrecondition(
            f"the ONNX conversion of {version.ref} does not match the torch model on "
            f"{parity['rows']} sample rows ({parity['reason']}); nothing written"
        )
    return meta, {"status": "kept", "converter": ONNX_CONVERTER, **parity}


def quantizable_ops(path: Path, method: Quantize = Quantize.dynamic) -> list[str]:
    """The graph's ops with weights that `method` gives int8 weights."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weighted = STATIC_OPS if method is Quantize.static else DYNAMIC_OPS
    return sorted({node.op_type for node in graph.node} & weighted)


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
    """Dynamic quantization: int8 weights, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_advice():
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:  # onnxruntime/onnx raise their own error types
            raise FailedPrecondition(f"int8 quantization failed: {exc}") from None


def calibration_feeds(runtime: OnnxModel, prepared: object) -> list[dict[str, np.ndarray]]:
    """The first CALIBRATION_ROWS rows as session feeds, CALIBRATION_BATCH rows each."""
    rows = min(_length(prepared), CALIBRATION_ROWS)
    return [
        runtime.feeds(_slice(prepared, start, min(start + CALIBRATION_BATCH, rows)))
        for start in range(0, rows, CALIBRATION_BATCH)
    ]


def quantize_static_int8(source: Path, target: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static quantization (QDQ, signed int8 weights and activations), ranges from `feeds`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Feeds(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with _quiet_advice(), tempfile.TemporaryDirectory(prefix="shipyard-calibrate-") as scratch:
        try:
            # Calibration writes an augmented model next to the output: keep it out of DIR.
            staged = Path(scratch) / MODEL_FILE
            quantize_static(source, staged, Feeds(), quant_format=QuantFormat.QDQ)
            shutil.move(staged, target)
        except Exception as exc:  # onnxruntime/onnx raise their own error types
            raise FailedPrecondition(f"static int8 quantization failed: {exc}") from None


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


def _agreeing(expected: np.ndarray, got: np.ndarray, how: Agreement) -> tuple[np.ndarray, str]:
    """Per-row booleans: does the candidate's row agree with the reference's; and the rule."""
    if how is Agreement.auto:
        if expected.dtype.kind != "f":
            how = Agreement.labels
        elif expected.ndim == 2 and expected.shape[1] > 1:
            how = Agreement.argmax
        else:
            how = Agreement.values
    if how is Agreement.argmax:
        if expected.ndim != 2:
            raise InvalidArgument(
                f"--agreement argmax needs class scores (n, k), got {expected.shape}"
            )
        same = np.asarray(got.argmax(axis=1) == expected.argmax(axis=1))
        return same, "top class (argmax) equal"
    if how is Agreement.values:
        close = np.isclose(got, expected, rtol=VALUE_RTOL, atol=VALUE_ATOL)
        within = np.asarray(_rows(close).all(axis=1))
        return within, f"values within rtol {VALUE_RTOL} / atol {VALUE_ATOL}"
    return np.asarray(_rows(np.asarray(got == expected)).all(axis=1)), "labels equal"


def compare(reference: Outputs, candidate: Outputs, how: Agreement = Agreement.auto) -> Parity:
    """Per-row agreement of the primary output; max and mean |diff| of every float output."""
    expected, got = np.asarray(reference[PRIMARY_OUTPUT]), np.asarray(candidate[PRIMARY_OUTPUT])
    if expected.shape != got.shape:
        raise FailedPrecondition(
            f"the quantized model's output shape {got.shape} differs from {expected.shape}"
        )
    close, measure = _agreeing(expected, got, how)
    agreement = float(np.mean(close)) if len(expected) else 1.0
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


def _slice(prepared: object, start: int, stop: int) -> object:
    if isinstance(prepared, dict):
        return {k: v[start:stop] for k, v in prepared.items()}
    if isinstance(prepared, pd.DataFrame):
        return prepared.iloc[start:stop]
    return np.asarray(prepared)[start:stop]


def _length(prepared: object) -> int:
    if isinstance(prepared, dict):
        return len(next(iter(prepared.values()))) if prepared else 0
    return len(prepared)  # type: ignore[arg-type]


def _one_row(prepared: object, index: int) -> object:
    return _slice(prepared, index, index + 1)


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
    ops = quantizable_ops(source, options.quantize)
    if not ops and "Gemm" in quantizable_ops(source, Quantize.static):
        return False, (
            "skipped: dynamic quantization covers MatMul and Conv, and this graph's weights "
            "are in Gemm ops (e.g. torch Linear layers): use --quantize static; exported fp32"
        )
    if not ops:
        return False, (
            "skipped: the graph has no MatMul/Gemm/Conv weights to quantize "
            "(tree ensembles and linear ONNX-ML operators stay fp32); exported fp32"
        )
    if options.quantize is Quantize.static:
        return True, (
            f"static int8 (QDQ) weights and activations on {', '.join(ops)}, "
            f"calibrated (MinMax) on the first rows of the sample (at most {CALIBRATION_ROWS})"
        )
    return True, f"dynamic int8 weights on {', '.join(ops)}"


def _measure(
    fp32: Path,
    exported: Path,
    meta: dict[str, Any],
    prepared: object,
    how: Agreement | None,
) -> tuple[Parity | None, dict[str, float]]:
    """Single-row latency of both files; parity unless `how` is None (nothing quantized)."""
    onnx_flavor = get_flavor("onnx")
    reference = onnx_flavor.load({MODEL_FILE: fp32}, meta)
    latency = {"fp32": single_row_latency_us(reference, prepared)}
    if how is None:  # the exported file is the fp32 one: nothing to compare
        return None, latency
    candidate = onnx_flavor.load({MODEL_FILE: exported}, meta)
    parity = compare(reference.predict(prepared), candidate.predict(prepared), how)  # type: ignore[arg-type]
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
    """Write DIR/model.onnx, DIR/edge.json and DIR/edge_runner.py for version `ref`; return
    the report."""
    options = options or EdgeOptions()
    options.check()
    out = Path(out).absolute()
    _check_output(out, overwrite)
    version = _resolve_ready(registry, ref)
    prepared = _sample(registry, version, options.sample)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging.", dir=out.parent))
    try:
        fp32_vs_native = version.compiled
        if version.flavor == "torch":
            source = staging / "fp32.onnx"  # removed before the directory is published
            meta, fp32_vs_native = torch_onnx(registry, version, prepared, source)
        else:
            source, meta = onnx_source(registry, version)
        quantize, reason = _plan(options, source)
        if quantize and prepared is None:
            raise FailedPrecondition(
                f"quantizing {version.ref} needs rows to measure agreement on: pass --sample "
                "FILE (or register the version with reference data), or use --quantize none"
            )
        exported = staging / MODEL_FILE
        calibration_rows = _write_model(options.quantize if quantize else Quantize.none,
                                        source, exported, meta, prepared)  # fmt: skip
        parity: Parity | None = None
        latency: dict[str, float] = {}
        if prepared is not None:
            how = options.agreement if quantize else None
            parity, latency = _measure(source, exported, meta, prepared, how)
        if quantize and parity is not None and parity.agreement < options.min_agreement:
            raise FailedPrecondition(
                f"the int8 model of {version.ref} agrees with the fp32 model on "
                f"{parity.agreement:.2%} of {parity.rows} rows ({parity.measure}), under "
                f"--min-agreement {options.min_agreement:.2%}; nothing written (export fp32 "
                "with --quantize none, or lower --min-agreement knowingly)"
            )
        report = _report(version, source, exported, meta, quantize, reason, parity, latency)
        report["fp32_vs_native"] = fp32_vs_native
        report["min_agreement"] = options.min_agreement
        report["quantization"]["method"] = options.quantize.value if quantize else None
        report["quantization"]["calibration_rows"] = calibration_rows
        if source.parent == staging:
            source.unlink()
        shutil.copyfile(Path(device_runner.__file__), staging / RUNNER_FILE)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        replace_directory(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return report


def _write_model(
    method: Quantize, source: Path, exported: Path, meta: dict[str, Any], prepared: object
) -> int | None:
    """Write the exported model; return the rows static quantization calibrated on."""
    if method is Quantize.none:
        shutil.copyfile(source, exported)
        return None
    if method is Quantize.dynamic:
        quantize_int8(source, exported)
        return None
    fp32 = get_flavor("onnx").load({MODEL_FILE: source}, meta)
    assert isinstance(fp32, OnnxModel)
    feeds = calibration_feeds(fp32, prepared)
    quantize_static_int8(source, exported, feeds)
    return sum(len(next(iter(feed.values()))) for feed in feeds)


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
        "runner": RUNNER_FILE,
        "bytes": {"exported": len(data), "fp32": source.stat().st_size},
        **graph_io(exported),
        "runtime_meta": meta,
        "signature": version.signature,
        "parity_vs_fp32": None if parity is None else parity.to_dict(),
        "single_row_latency_us": latency,
        "shipyard_version": shipyard_version(),
    }
