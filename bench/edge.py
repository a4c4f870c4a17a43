"""Edge export: fp32 vs int8 (dynamic and static quantization) ONNX size, single-row latency,
agreement, for scikit-learn and torch MLPs and a tree ensemble.

Each model is registered into a throw-away registry and exported with
`shipyard.packaging.edge.export_edge` (the path `shipyard export --target edge` takes), once
fp32 (`--quantize none`: for torch, the ONNX conversion) and once per quantization method; the
fp32 file and each exported file are then timed side by side in this process with onnxruntime
(1 thread, one row per call). Agreement with fp32 is measured by the export on 2,000 held-out
rows (static quantization calibrates on the first 1,000 of them).

    .venv/bin/python bench/edge.py [--seconds 0.4] [--markdown bench/out/edge.md]

Bounded: each model's fp32/exported pair is timed for 2 x --seconds (default 0.4 s) of
repeated calls in alternating slices; the whole run takes ~15 s, most of it imports,
training and registration (compile + parity checks).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Row:
    model: str
    method: str
    precision: str
    fp32_bytes: int
    exported_bytes: int
    fp32_us: float
    exported_us: float
    agreement: float | None
    measure: str
    mean_abs_diff: float | None
    note: str


def paired_per_call_us(
    first: Callable[[], object], second: Callable[[], object], budget_s: float
) -> tuple[float, float]:
    """Median per-call µs of two functions over 5 alternating slices (~budget/10 s each), so
    load from other work on the machine hits both alike."""
    first(), second()
    slices: tuple[list[float], list[float]] = ([], [])
    for _ in range(5):
        for func, times in ((first, slices[0]), (second, slices[1])):
            calls, start = 0, time.perf_counter()
            deadline = start + budget_s / 10
            while True:
                func()
                calls += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            times.append((now - start) / calls * 1e6)
    return statistics.median(slices[0]), statistics.median(slices[1])


def torch_mlp(X: np.ndarray, y: np.ndarray) -> Any:
    """A 64-256-128-2 torch MLP returning logits, trained briefly, as TorchScript."""
    import torch

    from shipyard.runtimes.torch import script_module

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 2),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), labels).backward()
        optimizer.step()
    return script_module(net.eval(), X[:4])


def build_models() -> tuple[list[tuple[str, Any]], np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = make_classification(5000, 64, n_informative=24, random_state=0)
    X = X.astype(np.float32)
    train, held_out = slice(0, 3000), slice(3000, 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        models: list[tuple[str, Any]] = [
            (
                "MLP 64-256-128-2",
                MLPClassifier((256, 128), max_iter=20, random_state=0).fit(X[train], y[train]),
            ),
            (
                "MLP 64-64-2",
                MLPClassifier((64,), max_iter=100, random_state=0).fit(X[train], y[train]),
            ),
            ("torch MLP 64-256-128-2", torch_mlp(X[train], y[train])),
            (
                "random forest 30x depth 10",
                RandomForestClassifier(30, max_depth=10, random_state=0).fit(X[train], y[train]),
            ),
        ]
    return models, X[train][:200], X[held_out]


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(budget_s: float) -> list[Row]:
    from shipyard.packaging.edge import EdgeOptions, Quantize, export_edge
    from shipyard.packaging.register import Registration, register_model
    from shipyard.registry.service import Registry

    models, sample, held_out = build_models()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        root = Path(tmp)
        with Registry.open(f"sqlite:///{root / 'r.db'}", root / "blobs", actor="bench") as reg:
            for index, (label, model) in enumerate(models):
                name = f"m{index}"
                register_model(reg, model, Registration(name, sample_input=sample))
                plain = EdgeOptions(Quantize.none, sample=held_out)
                export_edge(reg, name, root / f"{name}-fp32", options=plain)
                fp32 = session(root / f"{name}-fp32" / "model.onnx")
                feed = {fp32.get_inputs()[0].name: held_out[:1]}
                for method in (Quantize.dynamic, Quantize.static):
                    out = root / f"{name}-{method.value}"
                    options = EdgeOptions(method, sample=held_out, min_agreement=0.0)
                    report = export_edge(reg, name, out, options=options)
                    exported = session(out / "model.onnx")
                    fp32_us, exported_us = paired_per_call_us(
                        functools.partial(fp32.run, None, feed),
                        functools.partial(exported.run, None, feed),
                        2 * budget_s,
                    )
                    rows.append(_row(label, method.value, report, fp32_us, exported_us))
    return rows


def _row(label: str, method: str, report: dict[str, Any], fp32_us: float, us: float) -> Row:
    parity = report["parity_vs_fp32"]
    diffs = {} if parity is None else parity["mean_abs_diff"]
    applied = report["quantization"]["applied"]
    reason = report["quantization"]["reason"]
    note = (
        "" if applied else ("Gemm not covered" if "--quantize static" in reason else "no weights")
    )
    return Row(
        model=label,
        method=method,
        precision=report["precision"],
        fp32_bytes=report["bytes"]["fp32"],
        exported_bytes=report["bytes"]["exported"],
        fp32_us=fp32_us,
        exported_us=us,
        agreement=None if parity is None else parity["agreement"],
        measure="" if parity is None else parity["measure"],
        mean_abs_diff=diffs.get("predict_proba", diffs.get("predict")),
        note=note,
    )


def table(rows: list[Row], held_out: int) -> str:
    lines = [
        "| model | method | exported | fp32 size | exported size | size ratio | fp32 µs/row "
        f"| exported µs/row | int8 speed-up | agreement ({held_out} rows) | mean abs Δ |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        agreement = "—" if r.agreement is None else f"{r.agreement:.2%} ({r.measure})"
        diff = "—" if r.mean_abs_diff is None else f"{r.mean_abs_diff:.4f}"
        precision = r.precision + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.model} | {r.method} | {precision} | {r.fp32_bytes / 1024:,.1f} KiB | "
            f"{r.exported_bytes / 1024:,.1f} KiB | {r.fp32_bytes / r.exported_bytes:.2f}x smaller | "
            f"{r.fp32_us:.1f} | {r.exported_us:.1f} | {r.fp32_us / r.exported_us:.2f}x | "
            f"{agreement} | {diff} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="budget per latency cell")
    parser.add_argument("--markdown", type=Path, default=Path("bench/out/edge.md"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import onnxruntime

    started = time.perf_counter()
    rows = measure(args.seconds)
    header = (
        f"bench/edge.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()} "
        f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}; "
        f"{time.perf_counter() - started:.1f} s"
    )
    text = f"{header}\n\n{table(rows, 2000)}\n"
    print(text)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)


if __name__ == "__main__":
    main()
