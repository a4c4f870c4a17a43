"""The loop shared by the drift peer workers (drift_evidently.py, drift_nannyml.py).

Runs inside a peer venv (pandas and pyarrow only, besides the peer). bench/drift.py writes a
task directory and calls `python drift_PEER.py TASKDIR`; TASKDIR/tasks.json holds

    {"groups": [{"ref": "ref_0.parquet",
                 "windows": [{"id": "0/none/100", "path": "w_0_none_100.parquet"}, ...]}],
     "verify": 3,
     "cost": {"ref": "cost_ref.parquet", "windows": {"10000": "cost_10000.parquet"},
              "repeat": 3, "memory": false}}

(every key optional) and the worker prints one JSON object on stdout:

    {"results": {"0/none/100": {"drift": true, "score": 0.52}, ...},
     "agreement": {"METHOD": [same decisions, windows compared]},
     "cost": {"METHOD": {"10000": [median_s, best_s, peak_traced_mb or null]}},
     "versions": {...}, "seconds": wall time}

A peer supplies named methods `fit(reference, categorical) -> check`, where `check(window)`
returns (alarm with the peer's default rule, the score that rule thresholds). The first
method gives the results; the others are timed too and compared with the first on the first
`verify` windows. Whatever a peer keeps per reference (a fitted calculator, the reference
frame) lives in the closure, so a check costs what it costs a user who keeps that object.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

Check = Callable[[pd.DataFrame], tuple[bool, float]]
Fit = Callable[[pd.DataFrame, list[str]], Check]


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def timed(func: Callable[[], object], repeat: int, memory: bool) -> list[float | None]:
    """[median s, best s, peak traced MB or None]: one warm-up call, `repeat` timed calls,
    then (with memory) one traced call; tracemalloc slows the call, so it is not timed."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    peak: float | None = None
    if memory:
        tracemalloc.start()
        func()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return [statistics.median(times), min(times), peak]


def run(methods: dict[str, Fit], dists: list[str]) -> None:
    started = time.perf_counter()
    folder = Path(sys.argv[1])
    tasks: dict[str, Any] = json.loads((folder / "tasks.json").read_text())
    first, *others = methods
    results: dict[str, dict[str, object]] = {}
    agreement = {name: [0, 0] for name in others}
    verify = int(tasks.get("verify", 0))
    for group in tasks.get("groups", []):
        ref = pd.read_parquet(folder / group["ref"])
        cats = categorical_columns(ref)
        check = methods[first](ref, cats)
        extra = {name: methods[name](ref, cats) for name in others} if verify else {}
        for item in group["windows"]:
            window = pd.read_parquet(folder / item["path"])
            alarm, score = check(window)
            results[item["id"]] = {"drift": bool(alarm), "score": float(score)}
            if verify:
                verify -= 1
                for name, other in extra.items():
                    agreement[name][0] += int(other(window)[0] == alarm)
                    agreement[name][1] += 1
                if not verify:
                    extra = {}
    cost: dict[str, dict[str, list[float | None]]] = {}
    spec = tasks.get("cost")
    if spec:
        ref = pd.read_parquet(folder / spec["ref"])
        for name, fit in methods.items():
            check = fit(ref, categorical_columns(ref))
            for rows, path in spec["windows"].items():
                win = pd.read_parquet(folder / path)
                call = functools.partial(check, win)
                cost.setdefault(name, {})[rows] = timed(
                    call, int(spec["repeat"]), bool(spec.get("memory"))
                )
    out = {
        "results": results,
        "agreement": agreement,
        "cost": cost,
        "versions": {d: metadata.version(d) for d in dists},
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(out))
