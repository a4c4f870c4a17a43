"""`shipyard batch score`: score files with a registered model, resumable and exactly once.

    summary = score(registry, "fraud@production", "data/*.parquet", "out/")

Inputs (Parquet, CSV, JSON Lines: a file, a directory or a glob) are streamed in chunks of
`chunk_rows`; each chunk becomes `part-NNNNN.parquet` in `output` (predictions with the id
or row number and passthrough columns) and, for rows the model cannot take,
`_errors/part-NNNNN.parquet` (the leading "_" keeps it out of readers of `output`) with the reason. `_manifest.json` lists finished parts; running
the same job again skips them, so a killed job, re-run, scores every row exactly once.

Two engines run the same chunks (`plan`): "local" (this process, or `workers` processes;
`run`) and "ray" (Ray Data actors; `batch_ray`, imported only when chosen). Their outputs are
the same files, so either may resume a job the other began.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shipyard.core.errors import InvalidArgument
from shipyard.core.refs import ModelRef
from shipyard.jobs import plan, sources
from shipyard.jobs.layout import Layout, plan_layout
from shipyard.jobs.manifest import Manifest, open_output
from shipyard.jobs.run import Progress, run_tasks
from shipyard.jobs.scorer import ModelSource
from shipyard.packaging.load import load_version
from shipyard.registry.models import ModelVersion
from shipyard.registry.service import Registry

DEFAULT_CHUNK_ROWS = 65_536
ENGINES = ("local", "ray")
LEDGER_ACTION = "batch.scored"


class HasStore(Protocol):
    """The Python client (shipyard.Registry) or anything else holding a registry service."""

    @property
    def store(self) -> Registry: ...


@dataclass(frozen=True, slots=True)
class BatchSummary:
    model: str
    version: int
    output: str
    rows_in: int
    scored: int
    errors: int
    parts: int
    seconds: float
    rows_per_s: float
    checksum: str
    resumed_parts: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def score(
    registry: Registry | HasStore,
    ref: ModelRef | str,
    input: str | Path,
    output: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int = 1,
    id_column: str | None = None,
    passthrough: Sequence[str] = (),
    max_error_rate: float = 0.0,
    overwrite: bool = False,
    progress: Progress | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> BatchSummary:
    """Score `input` with `ref` into the directory `output`; see the module docstring.

    `engine="ray"` scores on Ray Data (`workers` actors) with the same parts and manifest;
    see `shipyard.jobs.batch_ray`.
    """
    _check_options(chunk_rows, workers, max_error_rate, engine)
    store = registry if isinstance(registry, Registry) else registry.store
    started = time.perf_counter()
    model = load_version(store, ref)
    files = sources.discover(input)
    layout = plan_layout(model.signature, files, id_column, passthrough)
    job = _job(model.version, files, layout, chunk_rows)
    out = Path(output)
    manifest = open_output(out, job, overwrite=overwrite)
    resumed = len(manifest.parts)
    resumed_rows = sum(p.rows for p in manifest.parts.values())
    if not manifest.complete:
        source = ModelSource(model.version, store.artifact_paths(model.version), model.compiled)
        total = sources.count_rows(files)
        if engine == "ray":
            from shipyard.jobs import batch_ray  # keeps `import shipyard` free of ray

            tasks = list(plan.remote_tasks(files, layout, chunk_rows, manifest))
            batch_ray.run_on_ray(
                tasks, manifest, out, source, layout, workers, max_error_rate, total,
                progress, ray_address,
            )  # fmt: skip
        else:
            run_tasks(
                plan.tasks(files, layout, chunk_rows, manifest), manifest, out, model, source,
                layout, workers, max_error_rate, total, progress,
            )  # fmt: skip
        _record(store, model.version, files, manifest, out, engine)
    seconds = time.perf_counter() - started
    return _summary(model.version, out, manifest, seconds, resumed, resumed_rows)


def _check_options(chunk_rows: int, workers: int, max_error_rate: float, engine: str) -> None:
    if engine not in ENGINES:
        raise InvalidArgument(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "ray":
        from shipyard.jobs.batch_ray import require_ray

        require_ray()  # before anything is written
    if chunk_rows < 1:
        raise InvalidArgument(f"chunk rows must be at least 1; got {chunk_rows}")
    if workers < 1:
        raise InvalidArgument(f"workers must be at least 1; got {workers}")
    if not 0.0 <= max_error_rate <= 1.0:
        raise InvalidArgument(f"max error rate must be within 0..1; got {max_error_rate}")


def _job(
    version: ModelVersion, files: Sequence[sources.InputFile], layout: Layout, chunk_rows: int
) -> dict[str, Any]:
    """What makes two runs the same job (and so one may resume the other)."""
    return {
        "model": version.name,
        "version": version.version,
        "input": sources.fingerprint(files)["sha256"],
        "chunk_rows": chunk_rows,
        "id_column": layout.id_column,
        "passthrough": list(layout.passthrough),
    }


def _record(
    store: Registry,
    version: ModelVersion,
    files: Sequence[sources.InputFile],
    manifest: Manifest,
    output: Path,
    engine: str,
) -> None:
    parts = manifest.parts.values()
    store.record(
        LEDGER_ACTION,
        model=version.name,
        version=version.version,
        details={
            "input": {**sources.fingerprint(files), "listing": sources.file_list(files)},
            "output": str(output.resolve()),
            "engine": engine,
            "rows_in": sum(p.rows for p in parts),
            "scored": sum(p.scored for p in parts),
            "errors": sum(p.errors for p in parts),
            "parts": len(manifest.parts),
            "checksum": manifest.checksum(),
        },
    )


def _summary(
    version: ModelVersion,
    output: Path,
    manifest: Manifest,
    seconds: float,
    resumed: int,
    resumed_rows: int,
) -> BatchSummary:
    parts = manifest.parts.values()
    rows = sum(p.rows for p in parts)
    now = rows - resumed_rows
    return BatchSummary(
        model=version.name,
        version=version.version,
        output=str(output),
        rows_in=rows,
        scored=sum(p.scored for p in parts),
        errors=sum(p.errors for p in parts),
        parts=len(manifest.parts),
        seconds=round(seconds, 3),
        rows_per_s=round(now / seconds, 1) if seconds > 0 else 0.0,
        checksum=manifest.checksum(),
        resumed_parts=resumed,
    )
