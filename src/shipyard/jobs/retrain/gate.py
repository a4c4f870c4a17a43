"""The validation gate: a candidate version against the champion on a labelled holdout.

A candidate passes only if (1) its signature accepts what the champion accepts, (2) no metric
regresses beyond the tolerance on the whole holdout, (3) nor on any configured segment with
enough rows, and (4) its single-row latency stays within `max_latency_ratio` of the
champion's. Bounded metrics (accuracy, F1, ROC AUC, R2) use an absolute tolerance; error
metrics (log loss, MAE, RMSE) a relative one. The result lists every check with its numbers,
so a rejection says exactly why.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.packaging.load import LoadedModel
from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT, require

HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "roc_auc": True, "r2": True}
LOWER_IS_BETTER = ("log_loss", "mae", "rmse")
MIN_SEGMENT_ROWS = 30
LATENCY_CALLS = 50


@dataclass(frozen=True, slots=True)
class GateSettings:
    label: str
    tolerance: float = 0.01
    segments: tuple[str, ...] = ()
    max_latency_ratio: float | None = 1.5

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise InvalidArgument(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.max_latency_ratio is not None and not self.max_latency_ratio >= 1:
            raise InvalidArgument(f"max latency ratio must be >= 1, got {self.max_latency_ratio}")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GateResult:
    candidate: str
    champion: str
    task: str
    rows: int
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "candidate": self.candidate,
            "champion": self.champion,
            "task": self.task,
            "rows": self.rows,
            "reasons": self.reasons,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail, "numbers": c.numbers}
                for c in self.checks
            ],
        }


def validate(
    candidate: LoadedModel,
    champion: LoadedModel,
    data: pd.DataFrame,
    settings: GateSettings,
    *,
    timer: Callable[[], float] = time.perf_counter,
) -> GateResult:
    """Run every check of the gate; see the module docstring."""
    missing = [c for c in (settings.label, *settings.segments) if c not in data.columns]
    if missing:
        raise InvalidArgument(f"holdout data has no column {', '.join(map(repr, missing))}")
    if len(data) == 0:
        raise InvalidArgument("the holdout data is empty")
    y = data[settings.label].to_numpy()
    features = _features(candidate, data, settings)
    checks = [_signature(candidate, champion)]
    if not checks[0].passed:
        return GateResult(
            candidate.version.ref, champion.version.ref, "?", len(data), tuple(checks)
        )
    new, old = _answers(candidate, features), _answers(champion, features)
    task = "classification" if PROBA_OUTPUT in old or _is_labels(y) else "regression"
    checks.append(_compare("holdout", task, y, new, old, settings.tolerance))
    for column in settings.segments:
        checks.extend(_segments(column, data[column], task, y, new, old, settings.tolerance))
    if settings.max_latency_ratio is not None:
        checks.append(_latency(candidate, champion, features, settings.max_latency_ratio, timer))
    return GateResult(candidate.version.ref, champion.version.ref, task, len(data), tuple(checks))


def _features(model: LoadedModel, data: pd.DataFrame, settings: GateSettings) -> pd.DataFrame:
    """The model's input columns when its signature names them (a segment column may be a
    feature too), else everything but the label and the segment columns."""
    signature = model.signature
    if signature is not None and signature.columnar:
        names = [s.name for s in signature.inputs]
        missing = [n for n in names if n not in data.columns]
        if missing:
            raise InvalidArgument(f"holdout data lacks input column(s) {', '.join(missing)}")
        return data[names]
    return data.drop(columns=[settings.label, *settings.segments])


def _is_labels(y: np.ndarray) -> bool:
    return y.dtype.kind in "OUSb" or (y.dtype.kind in "iu" and len(np.unique(y)) <= 20)


def _answers(model: LoadedModel, features: pd.DataFrame) -> dict[str, np.ndarray]:
    outputs = model.infer(features)
    return {k: np.asarray(v) for k, v in outputs.items() if k in (PRIMARY_OUTPUT, PROBA_OUTPUT)}


def _signature(candidate: LoadedModel, champion: LoadedModel) -> Check:
    """The candidate must take every input the champion takes, with the same type."""
    if champion.signature is None:
        return Check("signature", True, "the champion has no signature to compare")
    if candidate.signature is None:
        return Check("signature", False, "the candidate has no signature")
    theirs = {s.name: s.datatype for s in candidate.signature.inputs}
    problems = []
    for spec in champion.signature.inputs:
        if spec.name not in theirs:
            problems.append(f"input {spec.name!r} is missing")
        elif theirs[spec.name] != spec.datatype:
            problems.append(f"input {spec.name!r} is {theirs[spec.name]}, was {spec.datatype}")
    extra = sorted(set(theirs) - {s.name for s in champion.signature.inputs})
    if extra:
        problems.append(f"new required inputs {', '.join(extra)}")
    if problems:
        return Check("signature", False, "signature incompatible: " + "; ".join(problems))
    return Check("signature", True, "signature compatible")


def metrics(task: str, y: np.ndarray, answers: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The holdout metrics of one model (scikit-learn's definitions)."""
    m = require("sklearn.metrics", "sklearn")
    predicted = answers[PRIMARY_OUTPUT].reshape(len(y), -1)[:, 0]
    if task == "regression":
        values = predicted.astype(np.float64)
        truth = y.astype(np.float64)
        return {
            "mae": float(m.mean_absolute_error(truth, values)),
            "rmse": float(np.sqrt(m.mean_squared_error(truth, values))),
            "r2": float(m.r2_score(truth, values)),
        }
    found: dict[str, float] = {
        "accuracy": float(m.accuracy_score(y, predicted)),
        "f1": float(m.f1_score(y, predicted, average="macro")),
    }
    proba = answers.get(PROBA_OUTPUT)
    classes = np.unique(y)
    if proba is not None and proba.ndim == 2 and len(classes) == 2 == proba.shape[1]:
        found["roc_auc"] = float(m.roc_auc_score(y == classes[1], proba[:, 1]))
        found["log_loss"] = float(m.log_loss(y == classes[1], proba[:, 1], labels=[False, True]))
    return found


def _regressions(new: Mapping[str, float], old: Mapping[str, float], tolerance: float) -> list[str]:
    worse = []
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            continue
        if name in HIGHER_IS_BETTER and after < before - tolerance:
            worse.append(f"{name} {after:.4f} < {before:.4f} - {tolerance}")
        elif name in LOWER_IS_BETTER and after > before * (1 + tolerance) + 1e-12:
            worse.append(f"{name} {after:.4f} > {before:.4f} x (1 + {tolerance})")
    return worse


def _compare(
    scope: str,
    task: str,
    y: np.ndarray,
    new: Mapping[str, np.ndarray],
    old: Mapping[str, np.ndarray],
    tolerance: float,
) -> Check:
    ours, theirs = metrics(task, y, new), metrics(task, y, old)
    numbers = {"candidate": ours, "champion": theirs, "rows": len(y)}
    worse = _regressions(ours, theirs, tolerance)
    if worse:
        return Check(f"metrics[{scope}]", False, f"{scope}: " + "; ".join(worse), numbers)
    return Check(f"metrics[{scope}]", True, f"{scope}: no metric regressed", numbers)


def _segments(
    column: str,
    values: pd.Series,
    task: str,
    y: np.ndarray,
    new: Mapping[str, np.ndarray],
    old: Mapping[str, np.ndarray],
    tolerance: float,
) -> list[Check]:
    checks = []
    keys = values.astype(str).to_numpy()
    for key in sorted(set(keys)):
        rows = keys == key
        if rows.sum() < MIN_SEGMENT_ROWS:
            continue  # too few rows for a metric to mean anything
        pick = {name: array[rows] for name, array in new.items()}
        before = {name: array[rows] for name, array in old.items()}
        checks.append(_compare(f"{column}={key}", task, y[rows], pick, before, tolerance))
    return checks


def _timed(model: LoadedModel, row: pd.DataFrame, timer: Callable[[], float]) -> float:
    started = timer()
    model.infer(row)
    return timer() - started


def _latency(
    candidate: LoadedModel,
    champion: LoadedModel,
    features: pd.DataFrame,
    ratio: float,
    timer: Callable[[], float],
) -> Check:
    """Median single-row latency, alternating the two models so machine noise hits both."""
    rows = [features.iloc[[i % len(features)]] for i in range(LATENCY_CALLS)]
    for row in rows[:5]:  # warm both up
        _timed(candidate, row, timer), _timed(champion, row, timer)
    pairs = [(_timed(candidate, row, timer), _timed(champion, row, timer)) for row in rows]
    ours = statistics.median(p[0] for p in pairs)
    theirs = statistics.median(p[1] for p in pairs)
    bound = theirs * ratio
    numbers = {"candidate_s": ours, "champion_s": theirs, "max_ratio": ratio}
    if theirs <= 0:
        raise FailedPrecondition("the champion's latency could not be measured")
    if ours > bound:
        detail = f"single-row latency {ours * 1e3:.3f} ms > {ratio} x {theirs * 1e3:.3f} ms"
        return Check("latency", False, detail, numbers)
    return Check("latency", True, f"single-row latency {ours * 1e3:.3f} ms within bound", numbers)
