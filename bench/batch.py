"""`shipyard batch score` throughput and memory against the in-process loops it competes with.

One Parquet file of generated rows (20 float features) is scored four ways in the same run:

- shipyard, 1 worker and 2 workers: `python -m shipyard batch score` as a subprocess; rows/s
  from its summary (model load included, interpreter start not), peak RSS of the largest
  process via getrusage(RUSAGE_CHILDREN) in a fresh wrapper process per job;
- in-process ORT: pyarrow batches -> numpy -> the same compiled ONNX model in onnxruntime
  (1 thread, as shipyard runs it): the upper bound of one process;
- native sklearn: the same forest's predict + predict_proba over pandas chunks.

    .venv/bin/python bench/batch.py [--big] [--markdown bench/out/batch.md]

Default: 1M rows (< 3 minutes). `--big` adds a 10M-row file for the memory comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 65_536
FEATURES = 20

_MEASURE_RSS = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"summary": json.loads(done.stdout), "peak_kb": peak_kb}))
"""


@dataclass
class Row:
    rows: int
    engine: str
    rows_per_s: float
    peak_rss_mb: float | None = None


def build_model(home: Path) -> Any:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from shipyard import Registry
    from shipyard.app.settings import Settings

    X, y = make_classification(4000, FEATURES, random_state=0)
    X = X.astype(np.float32)
    model = RandomForestClassifier(20, max_depth=8, random_state=0, n_jobs=1).fit(X, y)
    with Registry(settings=Settings(home=home)) as registry:
        version = registry.register(model, "bench", sample_input=X[:200])
        onnx_path = registry.store.artifact_paths(version)["compiled/model.onnx"]
    return model, onnx_path


def write_rows(path: Path, rows: int) -> None:
    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(FEATURES)]
    schema = pa.schema([(n, pa.float32()) for n in names])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 1_000_000):
            count = min(1_000_000, rows - start)
            block = rng.normal(size=(count, FEATURES)).astype(np.float32)
            writer.write_table(pa.table(dict(zip(names, block.T, strict=True)), schema=schema))


def shipyard_job(home: Path, source: Path, out: Path, workers: int) -> tuple[float, float]:
    command = [
        sys.executable, "-m", "shipyard", "batch", "score", "bench", str(source), str(out),
        "--workers", str(workers), "--overwrite", "--json",
    ]  # fmt: skip
    env = {**os.environ, "SHIPYARD_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE_RSS, *command], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"shipyard batch score failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    return float(result["summary"]["rows_per_s"]), result["peak_kb"] / 1024


def ort_loop(onnx_path: Path, source: Path) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    start, rows = time.perf_counter(), 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=CHUNK):
        features = np.column_stack([c.to_numpy() for c in batch.columns])
        session.run(None, {name: features})
        rows += batch.num_rows
    return rows / (time.perf_counter() - start)


def sklearn_loop(model: Any, source: Path) -> float:
    start = time.perf_counter()
    frame = pd.read_parquet(source)
    for begin in range(0, len(frame), CHUNK):
        chunk = frame.iloc[begin : begin + CHUNK].to_numpy()
        model.predict(chunk)
        model.predict_proba(chunk)
    return len(frame) / (time.perf_counter() - start)


def run(sizes: list[int], work: Path) -> list[Row]:
    home = work / "home"
    model, onnx_path = build_model(home)
    rows: list[Row] = []
    for size in sizes:
        source = work / f"rows-{size}.parquet"
        write_rows(source, size)
        for workers in (1, 2):
            speed, peak = shipyard_job(home, source, work / f"out-{size}", workers)
            rows.append(Row(size, f"shipyard batch score --workers {workers}", speed, peak))
            print(rows[-1], flush=True)
        if size == sizes[0]:
            rows.append(Row(size, "in-process ORT loop (upper bound)", ort_loop(onnx_path, source)))
            rows.append(Row(size, "native sklearn, pandas chunks", sklearn_loop(model, source)))
            print(rows[-2], rows[-1], sep="\n", flush=True)
        source.unlink()
    return rows


def table(rows: list[Row]) -> str:
    ort = next(r.rows_per_s for r in rows if r.engine.startswith("in-process"))
    lines = [
        f"# Batch scoring ({datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, RandomForest 20 trees depth 8, {FEATURES} float features)",
        "",
        "| rows | engine | rows/s | vs in-process ORT | peak RSS (MB) |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        rss = "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:,.0f}"
        lines.append(
            f"| {r.rows:,} | {r.engine} | {r.rows_per_s:,.0f} | {r.rows_per_s / ort:.2f}x | {rss} |"
        )
    lines += [
        "",
        "shipyard rows/s include loading the model, schema checks, per-row validation, writing",
        "and fsyncing Parquet parts and the manifest; the loops only predict. Peak RSS is the",
        "largest single process of the job (getrusage RUSAGE_CHILDREN).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="Also score 10M rows.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--markdown", type=Path, default=Path(__file__).parent / "out" / "batch.md")
    args = parser.parse_args()
    sizes = [args.rows, 10 * args.rows] if args.big else [args.rows]
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-batch-") as work:
        rows = run(sizes, Path(work))
    text = table(rows)
    print(text)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)


if __name__ == "__main__":
    main()
