"""Run a batch job's tasks in this process or in worker processes, committing each part.

The manifest is updated (atomically) only here, in the job's process, as parts finish; the
job stops as soon as the error rate so far goes over the allowed one.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from shipyard.core.errors import InvalidArgument
from shipyard.jobs.layout import Layout
from shipyard.jobs.manifest import ERRORS_DIR, Manifest, PartRecord, part_name, save
from shipyard.jobs.scorer import GroupTask, ModelSource, Scorer, Task, init_worker, run_in_worker
from shipyard.packaging.load import LoadedModel

Progress = Callable[[int, int | None], None]
"""Called with (rows done, rows in total or None when unknown) as parts finish."""


def run_tasks(
    tasks: Iterable[Task | GroupTask],
    manifest: Manifest,
    output: Path,
    model: LoadedModel,
    source: ModelSource,
    layout: Layout,
    workers: int,
    max_error_rate: float,
    total: int | None,
    progress: Progress | None,
) -> None:
    if workers == 1:
        scorer = Scorer(model, layout, output)
        results: Generator[list[PartRecord], None, None] = (scorer.run(t) for t in tasks)
    else:
        results = _in_processes(tasks, source, layout, output, workers)
    commit_results(results, manifest, output, max_error_rate, total, progress)


def commit_results(
    results: Generator[list[PartRecord], None, None],
    manifest: Manifest,
    output: Path,
    max_error_rate: float,
    total: int | None,
    progress: Progress | None,
) -> None:
    """Commit parts as they come from any engine; closing `results` must stop its workers."""
    done = sum(p.rows for p in manifest.parts.values())
    if progress is not None:
        progress(done, total)
    try:
        for parts in results:
            for part in parts:
                _commit(manifest, output, part, max_error_rate)
                done += part.rows
            if progress is not None:
                progress(done, total)
    except BaseException:
        results.close()  # stops the workers, waiting for the ones still writing
        drop_uncommitted(output, manifest)
        raise
    manifest.complete = True
    save(output, manifest)


def _commit(manifest: Manifest, output: Path, part: PartRecord, max_error_rate: float) -> None:
    parts = [*manifest.parts.values(), part]
    rows = sum(p.rows for p in parts)
    errors = sum(p.errors for p in parts)
    if rows and errors / rows > max_error_rate:
        raise InvalidArgument(
            f"{errors:,} of {rows:,} rows failed validation ({errors / rows:.2%}), over the "
            f"allowed {max_error_rate:.2%}; reasons in {output / ERRORS_DIR}; "
            f"raise --max-error-rate to go on",
            details={"rows": rows, "errors": errors, "max_error_rate": max_error_rate},
        )
    manifest.parts[part.seq] = part
    save(output, manifest)


def drop_uncommitted(output: Path, manifest: Manifest) -> None:
    """A stopped job leaves only parts its manifest lists (a re-run would rewrite the rest)."""
    listed = {part_name(seq) for seq in manifest.parts}
    for path in output.glob("part-*.parquet"):
        if path.name not in listed:
            path.unlink(missing_ok=True)


def _in_processes(
    tasks: Iterable[Task | GroupTask],
    source: ModelSource,
    layout: Layout,
    output: Path,
    workers: int,
) -> Generator[list[PartRecord], None, None]:
    """Results in completion order, with at most 2 tasks per worker in flight (bounded memory)."""
    # fork starts workers in milliseconds (spawn re-imports everything, ~1 s each); the
    # workers still load their own model from `source`, so spawn behaves the same.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=init_worker, initargs=(source, layout, output)
    ) as pool:
        pending: set[Future[list[PartRecord]]] = set()
        try:
            for task in tasks:
                pending.add(pool.submit(run_in_worker, task))
                if len(pending) >= 2 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in finished)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
        finally:
            for future in pending:
                future.cancel()
