"""Native vs compiled (ONNX) prediction latency for each flavor, side by side in one run.

Each model is registered through shipyard into a throw-away registry and loaded twice: the
native runtime and the compiled fast path. Both go through the same `LoadedModel.predict`
(signature checks included), and the framework's own `predict` on the original object is
timed too, so the table shows what users get and what the framework alone costs.

    .venv/bin/python bench/runtimes.py [--seconds 0.3] [--markdown bench/out/runtimes.md]

Bounded: every cell runs for at most --seconds (default 0.3 s) of repeated calls.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Row:
    flavor: str
    model: str
    rows: int
    framework_us: float
    native_us: float
    compiled_us: float | None
    compiled_status: str


def per_call_seconds(func: Callable[[], object], budget_s: float) -> float:
    """Median over 5 slices of the per-call time, each slice ~budget/5 seconds."""
    func()  # warm up
    slices = []
    for _ in range(5):
        calls, start = 0, time.perf_counter()
        deadline = start + budget_s / 5
        while True:
            func()
            calls += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        slices.append((now - start) / calls)
    return statistics.median(slices)


def build_models() -> list[tuple[str, str, Any, np.ndarray]]:
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(5000, 20, n_informative=10, random_state=0)
    X = X.astype(np.float32)
    Xr, yr = make_regression(5000, 20, random_state=0)
    Xr = Xr.astype(np.float32)
    models: list[tuple[str, str, Any, np.ndarray]] = [
        (
            "sklearn",
            "random forest 20x depth 8",
            RandomForestClassifier(20, max_depth=8, random_state=0).fit(X, y),
            X,
        ),
        (
            "sklearn",
            "random forest 200x depth 12",
            RandomForestClassifier(200, max_depth=12, random_state=0).fit(X, y),
            X,
        ),
        (
            "sklearn",
            "hist gradient boosting",
            HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(X, y),
            X,
        ),
        (
            "sklearn",
            "scaler + logistic",
            make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
            X,
        ),
    ]
    import lightgbm
    import xgboost

    models.append(
        (
            "xgboost",
            "XGBClassifier 100x depth 6",
            xgboost.XGBClassifier(n_estimators=100, max_depth=6).fit(X, y),
            X,
        )
    )
    models.append(
        (
            "xgboost",
            "XGBRegressor 100x depth 6",
            xgboost.XGBRegressor(n_estimators=100, max_depth=6).fit(Xr, yr),
            Xr,
        )
    )
    models.append(
        (
            "lightgbm",
            "LGBMClassifier 100 trees",
            lightgbm.LGBMClassifier(n_estimators=100, verbose=-1).fit(X, y),
            X,
        )
    )
    models.append(("torch", "MLP 20-64-64-2 (TorchScript)", _torch_mlp(), X))
    models.append(("onnx", "forest exported to ONNX", _onnx_forest(models[0][2], X), X))
    return models


def _torch_mlp() -> Any:
    import torch

    net = torch.nn.Sequential(
        torch.nn.Linear(20, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 2),
    )
    return torch.jit.script(net.eval())


def _onnx_forest(model: Any, X: np.ndarray) -> Any:
    from skl2onnx import to_onnx

    return to_onnx(model, X[:5], options={"zipmap": False})


def framework_call(flavor: str, model: Any, batch: np.ndarray) -> Callable[[], object]:
    if flavor == "torch":
        import torch

        tensor = torch.from_numpy(batch)

        def call() -> object:
            with torch.inference_mode():
                return model(tensor)

        return call
    if flavor == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: batch})
    return lambda: model.predict(batch)


def measure(budget_s: float) -> list[Row]:
    import torch

    import shipyard
    from shipyard.app.settings import Settings

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as home:
        registry = shipyard.Registry(settings=Settings(home=Path(home)))
        for flavor, label, model, X in build_models():
            name = label.split(" ")[0].lower().replace("+", "") + f"-{len(rows)}"
            version = registry.register(model, name, sample_input=X[:256])
            native = registry.load(name, compiled=False)
            compiled = (
                registry.load(name) if (version.compiled or {}).get("status") == "kept" else None
            )
            status = str((version.compiled or {}).get("status", "-"))
            rows += time_one(flavor, label, model, X, native, compiled, status, budget_s)
        registry.close()
    return rows


def time_one(
    flavor: str,
    label: str,
    model: Any,
    X: np.ndarray,
    native: Any,
    compiled: Any,
    status: str,
    budget_s: float,
) -> list[Row]:
    rows = []
    for n in (1, 256):
        batch = np.ascontiguousarray(X[:n])
        framework = per_call_seconds(framework_call(flavor, model, batch), budget_s)
        ours = per_call_seconds(functools.partial(native.predict, batch), budget_s)
        fast = (
            per_call_seconds(functools.partial(compiled.predict, batch), budget_s)
            if compiled
            else None
        )
        rows.append(
            Row(flavor, label, n, framework * 1e6, ours * 1e6, fast * 1e6 if fast else None, status)
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| flavor | model | rows | framework predict µs | shipyard native µs | shipyard compiled µs | compiled vs framework | compiled rows/s | parity |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        compiled = f"{r.compiled_us:,.1f}" if r.compiled_us else "-"
        speedup = f"{r.framework_us / r.compiled_us:,.1f}x" if r.compiled_us else "-"
        best = r.compiled_us or r.native_us
        lines.append(
            f"| {r.flavor} | {r.model} | {r.rows} | {r.framework_us:,.1f} | {r.native_us:,.1f} | {compiled} | {speedup} | {r.rows / best * 1e6:,.0f} | {r.compiled_status} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time budget per cell")
    parser.add_argument("--markdown", type=Path, default=Path("bench/out/runtimes.md"))
    args = parser.parse_args()
    rows = measure(args.seconds)
    header = f"bench/runtimes.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), Python {platform.python_version()}"
    text = f"{header}\n\n{table(rows)}\n"
    print(text)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)


if __name__ == "__main__":
    main()
