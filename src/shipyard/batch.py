"""`shipyard.batch.score`: score files with a registered model, resumable and exactly once.

    summary = shipyard.batch.score("fraud@production", "data/", "out/", id_column="id")

The engine is `shipyard.jobs.batch`; this module gives it the default registry (the one
SHIPYARD_* points at) unless a `registry` is passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shipyard.client import Registry, default_registry
from shipyard.core.refs import ModelRef
from shipyard.jobs import batch as _engine
from shipyard.jobs.batch import BatchSummary

__all__ = ["BatchSummary", "score"]


def score(
    ref: ModelRef | str,
    input: str | Path,
    output: str | Path,
    *,
    registry: Registry | None = None,
    chunk_rows: int = _engine.DEFAULT_CHUNK_ROWS,
    workers: int = 1,
    id_column: str | None = None,
    passthrough: Sequence[str] = (),
    max_error_rate: float = 0.0,
    overwrite: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
) -> BatchSummary:
    """Score INPUT (a Parquet/CSV/JSONL file, directory or glob) into Parquet parts in
    OUTPUT; a re-run after a crash finishes the job with every row scored exactly once.
    `engine="ray"` scores on Ray Data (extra `shipyard[ray]`), at `ray_address` if given."""
    return _engine.score(
        registry or default_registry(),
        ref,
        input,
        output,
        chunk_rows=chunk_rows,
        workers=workers,
        id_column=id_column,
        passthrough=passthrough,
        max_error_rate=max_error_rate,
        overwrite=overwrite,
        engine=engine,
        ray_address=ray_address,
    )
