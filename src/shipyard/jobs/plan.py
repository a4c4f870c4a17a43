"""The tasks of a batch job: its chunks, numbered the same way on every run and by every engine.

The number of a chunk (`seq`) names its part file, so two runs (or two engines) that cut the
same input the same way write the same parts: that is what lets a re-run skip finished work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from shipyard.jobs import sources
from shipyard.jobs.layout import Layout
from shipyard.jobs.manifest import Manifest
from shipyard.jobs.scorer import FileTask, GroupTask, Task

CHUNKS_PER_TASK = 4  # of a Parquet row group: small enough to spread, large enough to not re-read


def tasks(
    files: Sequence[sources.InputFile], layout: Layout, chunk_rows: int, manifest: Manifest
) -> Iterator[Task | GroupTask]:
    """Every chunk not yet in the manifest; CSV/JSON chunks are read here, as they are met."""
    seq = first_row = 0
    for file in files:
        found: Iterator[tuple[Task | GroupTask, int, int]]
        if file.format == "parquet":
            found = group_tasks(file, layout, chunk_rows, seq, first_row)
        else:
            found = file_tasks(file, layout, chunk_rows, seq, first_row)
        for task, chunks, rows in found:
            if any(s not in manifest.parts for s in range(task.seq, task.seq + chunks)):
                yield task
            seq, first_row = seq + chunks, first_row + rows


def remote_tasks(
    files: Sequence[sources.InputFile], layout: Layout, chunk_rows: int, manifest: Manifest
) -> Iterator[GroupTask | FileTask]:
    """The same chunks as `tasks`, each read by whoever scores it (no table is shipped).

    A CSV/JSON Lines file cannot be split by position: it is one task, and its rows are
    counted here first so the files after it are numbered as `tasks` numbers them.
    """
    seq = first_row = 0
    for file in files:
        if file.format == "parquet":
            for task, chunks, rows in group_tasks(file, layout, chunk_rows, seq, first_row):
                if any(s not in manifest.parts for s in range(task.seq, task.seq + chunks)):
                    yield task
                seq, first_row = seq + chunks, first_row + rows
            continue
        rows = sources.count_file_rows(file, _as_text(file, layout))
        chunks = -(-rows // chunk_rows)
        done = frozenset(s for s in range(seq, seq + chunks) if s in manifest.parts)
        if len(done) < chunks:
            yield FileTask(
                seq, file, layout.columns, _as_text(file, layout), chunk_rows, first_row,
                chunks, done,
            )  # fmt: skip
        seq, first_row = seq + chunks, first_row + rows


def group_tasks(
    file: sources.InputFile, layout: Layout, chunk_rows: int, seq: int, first_row: int
) -> Iterator[tuple[GroupTask, int, int]]:
    """One task per row group (from the footer); it is read by whoever scores it."""
    file_row = file_chunk = 0
    for group, group_rows in enumerate(sources.row_groups(file)):
        chunks = -(-group_rows // chunk_rows)
        for skip in range(0, chunks, CHUNKS_PER_TASK):
            count = min(CHUNKS_PER_TASK, chunks - skip)
            rows = min(group_rows - skip * chunk_rows, count * chunk_rows)
            task = GroupTask(
                seq, file.name, file.path, group, skip, count, file_chunk, first_row, file_row,
                layout.columns, chunk_rows,
            )  # fmt: skip
            yield task, count, rows
            seq, first_row, file_row = seq + count, first_row + rows, file_row + rows
            file_chunk += count


def file_tasks(
    file: sources.InputFile, layout: Layout, chunk_rows: int, seq: int, first_row: int
) -> Iterator[tuple[Task, int, int]]:
    """CSV/JSON Lines cannot be split by position: read here, one task per chunk."""
    file_row = 0
    for index, table in enumerate(
        sources.chunks(file, layout.columns, _as_text(file, layout), chunk_rows)
    ):
        yield Task(seq + index, file.name, index, first_row, file_row, table), 1, table.num_rows
        first_row += table.num_rows
        file_row += table.num_rows


def _as_text(file: sources.InputFile, layout: Layout) -> tuple[str, ...]:
    return layout.numeric_features if file.format == "csv" else ()
