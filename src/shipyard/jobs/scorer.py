"""Score one chunk and write its part (and errors) file: the unit of work of a batch job.

The same code runs in the job's process (one worker), in worker processes or in Ray actors,
each of which loads the model once from the artifact paths the job resolved.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.core.errors import InvalidArgument
from shipyard.jobs.layout import Layout
from shipyard.jobs.manifest import ERRORS_DIR, PartRecord, part_name, write_part
from shipyard.jobs.rows import CheckedChunk, check_chunk
from shipyard.jobs.sources import InputFile, chunks, row_group_chunks
from shipyard.packaging.load import LoadedModel
from shipyard.packaging.register import COMPILED_FILE, NATIVE_DIR
from shipyard.registry.models import ModelVersion
from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT
from shipyard.runtimes.flavors import get_flavor

ROW_COLUMN = "row"


@dataclass(frozen=True, slots=True)
class Task:
    seq: int
    file: str
    chunk: int
    first_row: int  # global ordinal of the chunk's first row
    file_row: int  # the same row, counted within its file
    table: pa.Table


@dataclass(frozen=True, slots=True)
class GroupTask:
    """Chunks `skip`..`skip + count` of a Parquet row group, read by whoever scores them.

    Its chunks are numbered from `seq`. Decoding the skipped chunks again costs a few percent
    of scoring them; shipping them to the worker costs more than scoring.
    """

    seq: int
    file: str
    path: Path
    group: int
    skip: int
    count: int
    first_chunk: int
    first_row: int
    file_row: int
    columns: tuple[str, ...]
    chunk_rows: int


@dataclass(frozen=True, slots=True)
class FileTask:
    """A whole CSV/JSON Lines file, read by whoever scores it: chunks `seq`..`seq + chunks`.

    Chunks numbered in `done` are read (to find where the next starts) but not scored again.
    """

    seq: int
    input: InputFile
    columns: tuple[str, ...]
    as_text: tuple[str, ...]
    chunk_rows: int
    first_row: int
    chunks: int
    done: frozenset[int]


@dataclass(frozen=True, slots=True)
class ModelSource:
    """What a worker process needs to load the same model without the database."""

    version: ModelVersion
    paths: Mapping[str, Path]
    compiled: bool


def load_model(source: ModelSource) -> LoadedModel:
    meta = source.version.flavor_meta
    if source.compiled:
        runtime = get_flavor("onnx").load(
            {"model.onnx": source.paths[COMPILED_FILE]}, meta["compiled"]
        )
        return LoadedModel(source.version, runtime, compiled=True)
    prefix = f"{NATIVE_DIR}/"
    native = {k.removeprefix(prefix): p for k, p in source.paths.items() if k.startswith(prefix)}
    runtime = get_flavor(source.version.flavor).load(native, meta.get("native", {}))
    return LoadedModel(source.version, runtime, compiled=False)


class Scorer:
    def __init__(self, model: LoadedModel, layout: Layout, output: Path) -> None:
        self.model = model
        self.layout = layout
        self.output = output
        self.classes = _classes(model.version.flavor_meta)

    def score(self, task: Task) -> PartRecord:
        checked = check_chunk(self.layout, task.table)
        errors_sha = None
        if checked.error_count:
            errors = self._errors_table(task, checked)
            errors_sha = write_part(errors, self.output / ERRORS_DIR / part_name(task.seq))
        table = self._output_table(task, checked)
        digest = write_part(table, self.output / part_name(task.seq))
        return PartRecord(
            task.seq,
            task.file,
            task.chunk,
            task.first_row,
            task.table.num_rows,
            table.num_rows,
            checked.error_count,
            digest,
            errors_sha,
        )

    def run(self, task: Task | GroupTask | FileTask) -> list[PartRecord]:
        if isinstance(task, Task):
            return [self.score(task)]
        if isinstance(task, FileTask):
            return self._run_file(task)
        parts: list[PartRecord] = []
        seq, first_row, file_row = task.seq, task.first_row, task.file_row
        tables = row_group_chunks(task.path, task.group, task.columns, task.chunk_rows)
        for index, table in enumerate(itertools.islice(tables, task.skip, task.skip + task.count)):
            chunk = Task(seq, task.file, task.first_chunk + index, first_row, file_row, table)
            parts.append(self.score(chunk))
            seq, first_row, file_row = (
                seq + 1,
                first_row + table.num_rows,
                file_row + table.num_rows,
            )
        return parts

    def _run_file(self, task: FileTask) -> list[PartRecord]:
        parts: list[PartRecord] = []
        seq, first_row, file_row = task.seq, task.first_row, 0
        name = task.input.name
        for index, table in enumerate(
            chunks(task.input, task.columns, task.as_text, task.chunk_rows)
        ):
            if seq not in task.done and index < task.chunks:
                parts.append(self.score(Task(seq, name, index, first_row, file_row, table)))
            seq, first_row, file_row = (
                seq + 1,
                first_row + table.num_rows,
                file_row + table.num_rows,
            )
        if seq - task.seq != task.chunks:
            # Parts after this file are numbered from its chunk count when the job began.
            raise InvalidArgument(f"{name} changed while being scored; run the job again")
        return parts

    def _output_table(self, task: Task, checked: CheckedChunk) -> pa.Table:
        valid = pa.array(checked.valid)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        if self.layout.id_column is None:
            columns[ROW_COLUMN] = _ordinals(task.first_row, checked.valid)
        for name in self.layout.carried:
            columns[name] = task.table.column(name).filter(valid)
        if len(checked.data):
            columns.update(self._predictions(checked))
        else:
            columns.update(self._empty_predictions())
        return pa.table(columns)

    def _predictions(self, checked: CheckedChunk) -> dict[str, pa.Array]:
        outputs = self.model.infer(checked.data)
        result: dict[str, pa.Array] = {}
        primary = np.asarray(outputs[PRIMARY_OUTPUT])
        if primary.ndim == 1:
            result["prediction"] = pa.array(primary)
        else:
            flat = primary.reshape(len(primary), -1)
            for i in range(flat.shape[1]):
                result[f"prediction_{i}"] = pa.array(flat[:, i])
        if PROBA_OUTPUT in outputs:
            proba = np.asarray(outputs[PROBA_OUTPUT]).reshape(len(primary), -1)
            labels = self._labels(proba.shape[1])
            for i, label in enumerate(labels):
                result[f"proba_{label}"] = pa.array(proba[:, i])
        return result

    def _empty_predictions(self) -> dict[str, pa.Array]:
        """A chunk with no valid rows still gets a part file; its columns are the usual ones."""
        result: dict[str, pa.Array] = {"prediction": pa.array([], pa.float64())}
        for label in self.classes or []:
            result[f"proba_{label}"] = pa.array([], pa.float32())
        return result

    def _labels(self, width: int) -> list[str]:
        if self.classes is not None and len(self.classes) == width:
            return self.classes
        return [str(i) for i in range(width)]

    def _errors_table(self, task: Task, checked: CheckedChunk) -> pa.Table:
        bad = ~checked.valid
        positions = np.flatnonzero(bad)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        if self.layout.id_column is not None:
            columns[self.layout.id_column] = task.table.column(self.layout.id_column).take(
                pa.array(positions)
            )
        columns[ROW_COLUMN] = pa.array(positions + task.first_row, pa.int64())
        columns["file"] = pa.array([task.file] * len(positions), pa.string())
        columns["file_row"] = pa.array(positions + task.file_row, pa.int64())
        columns["reason"] = pa.array(checked.reasons[bad].tolist(), pa.string())
        return pa.table(columns)


def _ordinals(first_row: int, valid: np.ndarray) -> pa.Array:
    return pa.array(np.flatnonzero(valid) + first_row, pa.int64())


def _classes(meta: Mapping[str, Any]) -> list[str] | None:
    for key in ("native", "compiled"):
        section = meta.get(key)
        if isinstance(section, Mapping) and isinstance(section.get("classes"), list):
            return [str(c) for c in section["classes"]]
    return None


# Worker processes: one Scorer each, built once by the pool initializer.
_worker: Scorer | None = None


def init_worker(source: ModelSource, layout: Layout, output: Path) -> None:
    global _worker
    _worker = Scorer(load_model(source), layout, output)


def run_in_worker(task: Task | GroupTask | FileTask) -> list[PartRecord]:
    assert _worker is not None, "init_worker runs first"
    return _worker.run(task)
