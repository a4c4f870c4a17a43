"""The output directory of a batch job and its manifest: what is done, written atomically.

Every file lands by write-to-temp, fsync, rename, fsync of the directory. A part is done
only once `_manifest.json` lists it; a part file not listed (the job died between the two
renames) is written again under the same name by the next run, so no row is ever counted
twice and none is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.core.errors import Conflict, FailedPrecondition

MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"  # "_": dataset readers (pyarrow, pandas, Spark) skip it
TEMP_SUFFIX = ".tmp"


def part_name(seq: int) -> str:
    return f"part-{seq:05d}.parquet"


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One finished chunk: where its rows came from and what was written for them."""

    seq: int
    file: str
    chunk: int
    first_row: int
    rows: int
    scored: int
    errors: int
    sha256: str
    errors_sha256: str | None = None


@dataclass(slots=True)
class Manifest:
    job: dict[str, Any]
    parts: dict[int, PartRecord] = field(default_factory=dict)
    complete: bool = False

    def to_json(self) -> bytes:
        doc = {
            "job": self.job,
            "complete": self.complete,
            "parts": [asdict(self.parts[k]) for k in sorted(self.parts)],
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        doc = orjson.loads(raw)
        parts = {int(p["seq"]): PartRecord(**p) for p in doc["parts"]}
        return cls(dict(doc["job"]), parts, bool(doc.get("complete", False)))

    def checksum(self) -> str:
        """One hash over every part and errors file, in order."""
        digest = hashlib.sha256()
        for seq in sorted(self.parts):
            part = self.parts[seq]
            digest.update(f"{seq}:{part.sha256}:{part.errors_sha256 or '-'}\n".encode())
        return digest.hexdigest()


def open_output(output: Path, job: Mapping[str, Any], *, overwrite: bool) -> Manifest:
    """Ready `output` for `job`: resume its own manifest, refuse another job's output."""
    _ensure_writable(output)
    manifest_path = output / MANIFEST
    ours = {MANIFEST, ERRORS_DIR}
    if manifest_path.exists():
        found = _read_manifest(manifest_path)
        if found.job == dict(job) and not overwrite:
            _clear_temp(output)
            # A part listed but gone (deleted by hand) is scored again rather than lost.
            kept = {s: p for s, p in found.parts.items() if (output / part_name(s)).exists()}
            found.complete = found.complete and len(kept) == len(found.parts)
            found.parts = kept
            return found
        if not overwrite:
            raise Conflict(
                f"{output} holds the output of a different batch job "
                f"({_describe(found.job)}); use --overwrite to replace it",
                details={"found": found.job},
            )
    elif any(p.name not in ours for p in output.iterdir()) and not overwrite:
        raise Conflict(f"{output} is not empty and is not a batch output; use --overwrite")
    _clear(output)
    manifest = Manifest(dict(job))
    save(output, manifest)
    return manifest


def _read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.from_json(path.read_bytes())
    except (ValueError, KeyError, TypeError):
        raise Conflict(f"{path} is not a batch job manifest; use --overwrite") from None


def _describe(job: Mapping[str, Any]) -> str:
    return f"model {job.get('model')}:{job.get('version')}, input {str(job.get('input'))[:12]}"


def _ensure_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / ERRORS_DIR).mkdir(exist_ok=True)
        probe = output / f".probe-{uuid.uuid4().hex}{TEMP_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FailedPrecondition(
            f"cannot write to the output directory {output}: {exc.strerror or exc}"
        ) from None


def _clear(output: Path) -> None:
    """Remove what a batch job writes (parts, errors, manifest, temp files); nothing else.

    The manifest goes first: killed half-way, no manifest may list a part already removed.
    """
    with contextlib.suppress(FileNotFoundError):
        (output / MANIFEST).unlink()
    _fsync_dir(output)
    for path in [*output.glob("part-*.parquet"), *(output / ERRORS_DIR).glob("part-*.parquet")]:
        path.unlink()
    _clear_temp(output)


def _clear_temp(output: Path) -> None:
    for directory in (output, output / ERRORS_DIR):
        for path in directory.glob(f".*{TEMP_SUFFIX}"):
            path.unlink()


def save(output: Path, manifest: Manifest) -> None:
    _replace(output / MANIFEST, manifest.to_json())


def write_part(table: pa.Table, path: Path) -> str:
    """Write `table` as Parquet at `path` atomically; return the file's sha256."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        pq.write_table(table, temp)
        digest = _fsync_and_hash(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest


def _replace(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_and_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb+") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        os.fsync(handle.fileno())
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
