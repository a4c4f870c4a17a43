"""The ONNX fast path: convert a model, then keep it only if it agrees with the native one.

Parity is measured on the registration sample through the same `OnnxRuntime` that serves
it: labels must be equal (values and dtype kind), probabilities within 1e-5 absolute,
regression outputs within 1e-5 relative + 1e-5 absolute. Nothing but programming errors
escapes `compile_model`: every other outcome is a record ("kept", "rejected",
"unsupported", "failed") the registry stores next to the version.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT, ModelInput, Outputs, Runtime
from shipyard.runtimes.onnx import OnnxRuntime

NATIVE_ONLY = frozenset({"torch", "onnx", "pyfunc"})
PROBA_ATOL = 1e-5
REGRESSION_RTOL = 1e-5
REGRESSION_ATOL = 1e-5
MAX_PARITY_ROWS = 10_000  # enough rows to catch a wrong split, cheap enough at registration
TENSOR_INPUT = "input"
_RANK = {"unsupported": 0, "failed": 1, "rejected": 2}
_UNSUPPORTED_ERRORS = frozenset(
    {"MissingShapeCalculator", "MissingConverter", "MissingTypeCalculator", "NotImplementedError"}
)


@dataclass(frozen=True)
class Compiled:
    """The ONNX bytes (None unless kept), their onnx-flavor meta, and the parity record."""

    onnx: bytes | None
    meta: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


class _Unsupported(Exception):
    """The model (or its sample) is outside what the converters handle."""


@dataclass(frozen=True)
class _Plan:
    """How the ONNX graph takes its inputs: one tensor of `element`, or one per column."""

    element: str  # "float", "double", "int64" or "string" for a single tensor
    width: int
    columns: tuple[tuple[str, str], ...] = ()


def compile_model(model: object, flavor: str, sample: ModelInput, native: Runtime) -> Compiled:
    """Convert `model` to ONNX and keep it only if it matches `native` on `sample`."""
    if flavor in NATIVE_ONLY:
        return _outcome("unsupported", f"flavor {flavor} runs natively")
    sample = _head(sample)
    try:
        plans = _plans(flavor, sample)
        _check_model(model, flavor)
    except _Unsupported as exc:
        return _outcome("unsupported", str(exc))
    try:
        expected = native.predict(sample)
    except Exception as exc:  # the sample was checked by the caller; report, don't raise
        return _outcome("failed", f"native predict on the sample failed: {_short(exc)}")
    last: Compiled | None = None
    for plan in plans:
        result = _attempt(model, flavor, plan, sample, expected)
        if result.record["status"] == "kept":
            return result
        # Report the most informative miss: a measured rejection, else the latest failure.
        if last is None or _RANK[result.record["status"]] >= _RANK[last.record["status"]]:
            last = result
    assert last is not None
    return last


def _attempt(
    model: object, flavor: str, plan: _Plan, sample: ModelInput, expected: Outputs
) -> Compiled:
    try:
        raw, converter = _convert(model, flavor, plan)
    except _Unsupported as exc:
        return _outcome("unsupported", str(exc))
    except Exception as exc:  # converters raise anything from TypeError to RuntimeError
        return _outcome("failed", f"conversion failed: {_short(exc)}")
    try:
        meta = _meta(raw, plan, expected)
        got = OnnxRuntime(raw, meta).predict(sample)
    except Exception as exc:  # onnxruntime load or run errors
        return _outcome("failed", f"the converted model does not run: {_short(exc)}", converter)
    parity = compare(expected, got)
    status = "kept" if parity.pop("ok") else "rejected"
    record = {"status": status, "converter": converter, "input_element": plan.element, **parity}
    return Compiled(raw if status == "kept" else None, meta if status == "kept" else {}, record)


def compare(expected: Outputs, got: Outputs) -> dict[str, Any]:
    """Parity numbers between native and ONNX outputs, with `ok` and a `reason`."""
    want = expected[PRIMARY_OUTPUT]
    have = got.get(PRIMARY_OUTPUT)
    result: dict[str, Any] = {"rows": len(want), "labels_equal": None, "max_abs_diff": None}
    if have is None or have.shape != want.shape:
        shape = None if have is None else list(have.shape)
        return {**result, "ok": False, "reason": f"predict shape {shape} != {list(want.shape)}"}
    reasons: list[str] = []
    diffs: list[float] = []
    if PROBA_OUTPUT in expected or want.dtype.kind not in "fc":
        equal = want.dtype.kind == have.dtype.kind and bool(np.array_equal(want, have))
        result["labels_equal"] = equal
        if not equal:
            reasons.append("labels differ")
    else:
        diffs.append(_max_diff(want, have))
        if not np.allclose(have, want, rtol=REGRESSION_RTOL, atol=REGRESSION_ATOL):
            reasons.append(f"regression outputs differ beyond rtol={REGRESSION_RTOL}")
    if PROBA_OUTPUT in expected:
        proba = got.get(PROBA_OUTPUT)
        if proba is None or proba.shape != expected[PROBA_OUTPUT].shape:
            reasons.append("predict_proba missing or of a different shape")
        else:
            diffs.append(_max_diff(expected[PROBA_OUTPUT], proba))
            if diffs[-1] > PROBA_ATOL:
                reasons.append(f"probabilities differ by more than {PROBA_ATOL}")
    result["max_abs_diff"] = max(diffs) if diffs else None
    result["reason"] = "; ".join(reasons) or "outputs match"
    return {**result, "ok": not reasons}


def _max_diff(want: np.ndarray, have: np.ndarray) -> float:
    delta = np.abs(np.asarray(want, dtype=np.float64) - np.asarray(have, dtype=np.float64))
    return float(np.nanmax(delta)) if delta.size else 0.0


def _head(sample: ModelInput) -> ModelInput:
    if isinstance(sample, pd.DataFrame | np.ndarray):
        return sample[:MAX_PARITY_ROWS]
    return sample


def _plans(flavor: str, sample: ModelInput) -> list[_Plan]:
    """Float32 first (exact for sklearn trees); float64 too when the sample is float64."""
    if isinstance(sample, pd.DataFrame):
        return _frame_plans(flavor, sample)
    if not isinstance(sample, np.ndarray):
        raise _Unsupported("samples of named tensors are not compiled")
    if sample.ndim != 2 or sample.dtype.kind not in "fiub":
        raise _Unsupported(
            f"only 2-D numeric samples are compiled, got {sample.dtype} {sample.shape}"
        )
    plans = [_Plan("float", sample.shape[1])]
    if sample.dtype == np.float64 and flavor == "sklearn":
        plans.append(_Plan("double", sample.shape[1]))
    return plans


def _frame_plans(flavor: str, frame: pd.DataFrame) -> list[_Plan]:
    kinds = [_column_kind(frame[col]) for col in frame.columns]
    if flavor != "sklearn":  # boosters take the frame as one float matrix
        if "string" in kinds:
            raise _Unsupported(f"{flavor} models with string columns are not compiled")
        return [_Plan("float", frame.shape[1])]
    names = [str(col) for col in frame.columns]
    plans: list[_Plan] = []
    if "string" not in kinds:  # plain estimators take one matrix; ColumnTransformers need names
        plans.append(_Plan("float", len(names)))
    if "double" in kinds:  # float32 first; float64 columns keep their precision next
        floats = ["float" if kind == "double" else kind for kind in kinds]
        plans.append(_Plan("columns", len(names), tuple(zip(names, floats, strict=True))))
    if "double" in kinds and "string" not in kinds:
        plans.append(_Plan("double", len(names)))
    plans.append(_Plan("columns", len(names), tuple(zip(names, kinds, strict=True))))
    return plans


def _column_kind(column: pd.Series) -> str:
    kind = column.dtype.kind
    if kind == "f":
        return "double" if column.dtype == np.float64 else "float"
    if kind in "iub":
        return "int64"
    if kind in "OSU" or pd.api.types.is_string_dtype(column.dtype):
        return "string"
    raise _Unsupported(f"column {column.name!r} of dtype {column.dtype} is not compiled")


def _check_model(model: object, flavor: str) -> None:
    """Raw boosters with classification objectives output probabilities natively but
    labels+probabilities in ONNX; register the sklearn wrapper to compile them."""
    if flavor not in ("xgboost", "lightgbm") or hasattr(model, "predict_proba"):
        return
    if hasattr(model, "get_booster") or hasattr(model, "booster_"):
        return
    objective = _booster_objective(model, flavor)
    if objective.startswith(("binary", "multi")):
        raise _Unsupported(
            f"a raw {flavor} Booster with objective {objective!r} is not compiled; "
            "register the sklearn wrapper (classifier) instead"
        )


def _booster_objective(model: Any, flavor: str) -> str:
    if flavor == "xgboost":
        from shipyard.runtimes.xgboost import objective_of

        return objective_of(model)
    from shipyard.runtimes.lightgbm import objective_of as lgb_objective

    return lgb_objective(str(model.model_to_string()))


_BOOL_IN_INTS = r"Field onnx\.AttributeProto\.ints: Expected an int, got a boolean"


def _convert(model: object, flavor: str, plan: _Plan) -> tuple[bytes, str]:
    if flavor == "sklearn":
        import skl2onnx
        from skl2onnx.common import data_types

        types = _initial_types(data_types, plan)
        try:
            # zipmap off: probabilities as one tensor; the option exists only for classifiers.
            options = {"zipmap": False} if hasattr(model, "predict_proba") else None
            with warnings.catch_warnings():
                # skl2onnx 1.20 writes bools into integer attributes (HistGradientBoosting);
                # protobuf 6 only warns about it, and the values are correct 0/1 ints.
                warnings.filterwarnings("ignore", _BOOL_IN_INTS, DeprecationWarning)
                proto = skl2onnx.convert_sklearn(model, initial_types=types, options=options)
        except Exception as exc:
            if type(exc).__name__ in _UNSUPPORTED_ERRORS:
                raise _Unsupported(f"skl2onnx cannot convert it: {_short(exc)}") from None
            raise
        return proto.SerializeToString(), f"skl2onnx {skl2onnx.__version__}"
    if flavor in ("xgboost", "lightgbm"):
        import onnxmltools
        from onnxmltools.convert.common import data_types

        types = _initial_types(data_types, plan)
        if flavor == "xgboost":
            proto = onnxmltools.convert_xgboost(_unnamed_features(model), initial_types=types)
        else:
            proto = onnxmltools.convert_lightgbm(model, initial_types=types, zipmap=False)
        return proto.SerializeToString(), f"onnxmltools {onnxmltools.__version__}"
    raise _Unsupported(f"flavor {flavor} has no ONNX converter")


def _unnamed_features(model: Any) -> Any:
    """onnxmltools only parses features named f0, f1, ...: convert a copy without the
    DataFrame's column names (the ONNX graph takes the columns in the same order)."""
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not booster.feature_names:
        return model
    clone = copy.deepcopy(model)
    (clone.get_booster() if hasattr(clone, "get_booster") else clone).feature_names = None
    return clone


def _initial_types(data_types: Any, plan: _Plan) -> list[tuple[str, Any]]:
    classes = {
        "float": data_types.FloatTensorType,
        "double": data_types.DoubleTensorType,
        "int64": data_types.Int64TensorType,
        "string": data_types.StringTensorType,
    }
    if plan.columns:
        return [(name, classes[kind]([None, 1])) for name, kind in plan.columns]
    return [(TENSOR_INPUT, classes[plan.element]([None, plan.width]))]


def _meta(raw: bytes, plan: _Plan, expected: Outputs) -> dict[str, Any]:
    """onnx-flavor meta: column inputs, output names, and native shapes/dtypes to restore."""
    from shipyard.runtimes.onnx import new_session

    declared = {item.name: item.shape for item in new_session(raw).get_outputs()}
    names = list(declared)
    outputs: dict[str, str] = {}
    if "label" in declared:
        outputs["label"] = PRIMARY_OUTPUT
        if "probabilities" in declared and PROBA_OUTPUT in expected:
            outputs["probabilities"] = PROBA_OUTPUT
    else:
        outputs[names[0]] = PRIMARY_OUTPUT
    flatten = [
        ours
        for onnx_name, ours in outputs.items()
        if expected[ours].ndim == 1 and len(declared[onnx_name] or [None, None]) != 1
    ]
    dtypes = {ours: expected[ours].dtype.str for ours in outputs.values()}
    meta: dict[str, Any] = {"outputs": outputs, "flatten": flatten, "dtypes": dtypes}
    if plan.columns:
        meta["columns"] = [[name, name] for name, _ in plan.columns]
    return meta


def _outcome(status: str, reason: str, converter: str | None = None) -> Compiled:
    record: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "rows": 0,
        "labels_equal": None,
        "max_abs_diff": None,
        "converter": converter,
    }
    return Compiled(None, {}, record)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
