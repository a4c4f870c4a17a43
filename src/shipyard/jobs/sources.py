"""Batch inputs: find the files, fingerprint them, check their schema, stream fixed chunks.

A chunk is `chunk_rows` consecutive rows of one Parquet row group, or of one CSV/JSON Lines
file (the last one of a group or file may be shorter). Chunks are cut by counting rows, not
by how a reader happens to batch, so the same input and chunk size always give the same
chunks: that is what lets a re-run skip finished work. Parquet row groups are also the unit a
worker process reads by itself (nothing is shipped between processes).
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from shipyard.core.errors import InvalidArgument

FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
}


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    name: str
    format: str
    size: int
    mtime_ns: int


def discover(source: str | Path) -> list[InputFile]:
    """The input files of a file, a directory (recursively) or a glob, in a stable order."""
    text = str(source)
    path = Path(source)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))]
        base = path
    elif path.is_file():
        found, base = [path], path.parent
    elif glob.has_magic(text):
        found = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        base = Path(text.split("*")[0].split("?")[0].split("[")[0]).parent
    else:
        raise InvalidArgument(f"{text}: no such file, directory or glob match")
    files = sorted(p for p in found if p.suffix.lower() in FORMATS)
    if not files:
        kinds = ", ".join(FORMATS)
        raise InvalidArgument(f"{text}: no input files ({kinds})")
    return [_input_file(p, base) for p in files]


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def _input_file(path: Path, base: Path) -> InputFile:
    stat = path.stat()
    try:
        name = str(path.relative_to(base))
    except ValueError:
        name = str(path)
    return InputFile(path, name, FORMATS[path.suffix.lower()], stat.st_size, stat.st_mtime_ns)


def fingerprint(files: Sequence[InputFile]) -> dict[str, object]:
    """Names, sizes and modification times of the inputs, and one hash over all of them."""
    listed = [[f.name, f.size, f.mtime_ns] for f in files]
    digest = hashlib.sha256(repr(listed).encode()).hexdigest()
    return {"sha256": digest, "files": len(files), "bytes": sum(f.size for f in files)}


def file_list(files: Sequence[InputFile], limit: int = 50) -> list[list[object]]:
    return [[f.name, f.size, f.mtime_ns] for f in files[:limit]]


def read_schema(file: InputFile) -> pa.Schema:
    """The schema a reader sees (CSV/JSON: inferred from the first block)."""
    try:
        if file.format == "parquet":
            return pq.read_schema(file.path)
        return ds.dataset(file.path, format=file.format).schema
    except Exception as exc:  # each reader raises its own types; the caller needs one line
        raise InvalidArgument(f"{file.name}: cannot read as {file.format}: {_line(exc)}") from None


def count_rows(files: Sequence[InputFile]) -> int | None:
    """Total rows when cheap to know (Parquet footers); None when a file must be read."""
    if any(f.format != "parquet" for f in files):
        return None
    return sum(int(pq.ParquetFile(f.path).metadata.num_rows) for f in files)


def count_file_rows(file: InputFile, as_text: Sequence[str]) -> int:
    """Rows of a CSV/JSON Lines file, read with the options `chunks` uses (so it fails alike)."""
    return sum(t.num_rows for t in chunks(file, (), as_text, 1 << 20))


def chunks(
    file: InputFile, columns: Sequence[str], as_text: Sequence[str], chunk_rows: int
) -> Iterator[pa.Table]:
    """`columns` of a CSV/JSON file in tables of `chunk_rows` rows (the last may be shorter).

    CSV columns in `as_text` are read as strings so one bad value becomes one bad row, not
    a failed read; the caller converts them.
    """
    fmt: str | ds.FileFormat = file.format
    if file.format == "csv" and as_text:
        types = {name: pa.string() for name in as_text}
        fmt = ds.CsvFileFormat(convert_options=pcsv.ConvertOptions(column_types=types))
    try:
        dataset = ds.dataset(file.path, format=fmt)
        batches = dataset.to_batches(
            columns=list(columns), batch_size=chunk_rows, batch_readahead=2, fragment_readahead=1
        )
        yield from _rechunk(batches, chunk_rows)
    except InvalidArgument:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise InvalidArgument(f"{file.name}: cannot read as {file.format}: {_line(exc)}") from None


def row_groups(file: InputFile) -> list[int]:
    """Rows in each row group of a Parquet file (from its footer: no data is read)."""
    try:
        metadata = pq.ParquetFile(file.path).metadata
    except Exception as exc:  # pyarrow raises its own types; the caller needs one line
        raise InvalidArgument(f"{file.name}: cannot read as parquet: {_line(exc)}") from None
    return [int(metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)]


def row_group_chunks(
    path: Path, group: int, columns: Sequence[str], chunk_rows: int
) -> Iterator[pa.Table]:
    """One Parquet row group in chunks: what a worker reads for itself, nothing shipped."""
    reader = pq.ParquetFile(path)
    yield from _rechunk(
        reader.iter_batches(
            batch_size=chunk_rows, row_groups=[group], columns=list(columns), use_threads=False
        ),
        chunk_rows,
    )


def _rechunk(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(chunk_rows - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
    if held:
        yield pa.Table.from_batches(pending)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
