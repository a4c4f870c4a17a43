"""Content-addressed blob stores: a blob's key is the SHA-256 of its bytes.

Keys are computed by the server, never taken from a caller, so no user input ever becomes a
storage path. Writes go to a staging file that is fsynced and renamed into place: a blob either
exists complete under its hash or not at all, whatever happens to the writing process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import fsspec

from shipyard.core.errors import InvalidArgument, NotFound, Unavailable

CHUNK = 1 << 20
STALE_STAGING_S = 3600.0
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Blob:
    """What the store knows about a stored blob (the registry turns it into an Artifact)."""

    sha256: str
    size: int


@runtime_checkable
class BlobStore(Protocol):
    def put_file(self, path: Path) -> Blob: ...
    def put_bytes(self, data: bytes) -> Blob: ...
    def path(self, sha256: str) -> Path: ...
    def exists(self, sha256: str) -> bool: ...
    def verify(self, sha256: str) -> bool: ...


def check_digest(sha256: str) -> str:
    if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
        raise InvalidArgument(f"{sha256!r} is not a lowercase hex SHA-256 digest")
    return sha256


def blob_key(sha256: str) -> str:
    """`sha256/ab/cdef...`: two-level fan-out keeps directories small."""
    check_digest(sha256)
    return f"sha256/{sha256[:2]}/{sha256[2:]}"


def hash_stream(stream: IO[bytes], sink: IO[bytes] | None = None) -> Blob:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return Blob(digest.hexdigest(), size)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """Blobs under `root/sha256/ab/<rest of hex>` on a local file system."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self._staging = self.root / ".staging"
        try:
            self._staging.mkdir(parents=True, exist_ok=True)
            (self.root / "sha256").mkdir(exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create the blob store at {self.root}: {exc}") from exc
        self._clean_staging()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _clean_staging(self) -> None:
        # Leftovers of writers killed mid-copy; an hour is far longer than any live write.
        cutoff = time.time() - STALE_STAGING_S
        for entry in self._staging.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()

    def _target(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    @contextlib.contextmanager
    def _staged(self) -> Iterator[tuple[Path, IO[bytes]]]:
        staged = self._staging / uuid.uuid4().hex
        try:
            with open(staged, "xb") as sink:
                yield staged, sink
        finally:
            staged.unlink(missing_ok=True)

    def _commit(self, staged: Path, sink: IO[bytes], blob: Blob) -> Blob:
        sink.flush()
        os.fsync(sink.fileno())
        target = self._target(blob.sha256)
        if target.is_file():
            return blob  # same content already stored: never rewritten
        if not target.parent.is_dir():
            target.parent.mkdir(exist_ok=True)
            _fsync_dir(target.parent.parent)
        os.chmod(staged, 0o444)
        os.replace(staged, target)
        _fsync_dir(target.parent)
        return blob

    def put_file(self, path: Path) -> Blob:
        try:
            with open(path, "rb") as source, self._staged() as (staged, sink):
                return self._commit(staged, sink, hash_stream(source, sink))
        except FileNotFoundError as exc:
            raise NotFound(f"file {str(path)!r} does not exist") from exc
        except OSError as exc:
            raise Unavailable(f"cannot store {str(path)!r} in {self.root}: {exc}") from exc

    def put_bytes(self, data: bytes) -> Blob:
        blob = Blob(hashlib.sha256(data).hexdigest(), len(data))
        try:
            with self._staged() as (staged, sink):
                sink.write(data)
                return self._commit(staged, sink, blob)
        except OSError as exc:
            raise Unavailable(f"cannot store a blob in {self.root}: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        return self._target(sha256).is_file()

    def path(self, sha256: str) -> Path:
        target = self._target(sha256)
        if not target.is_file():
            raise NotFound(f"blob {sha256} is missing from {self.root}")
        return target

    def verify(self, sha256: str) -> bool:
        """Rehash the stored bytes: True only if present and intact."""
        target = self._target(sha256)
        try:
            with open(target, "rb") as stream:
                return hash_stream(stream).sha256 == sha256
        except FileNotFoundError:
            return False


class FsspecBlobStore:
    """Blobs in any fsspec file system (`s3://bucket/prefix`, `gs://...`, `memory://...`).

    `path()` downloads into a local LocalBlobStore cache, which verifies the hash on the way in.
    """

    def __init__(self, url: str, cache_dir: Path, **storage_options: Any) -> None:
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except (ImportError, ValueError) as exc:
            raise InvalidArgument(f"cannot use blob store {url!r}: {exc}") from exc
        self._fs: Any = fs
        self._root = str(root).rstrip("/")
        self.cache = LocalBlobStore(cache_dir)

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"

    def _key(self, sha256: str) -> str:
        return f"{self._root}/{blob_key(sha256)}"

    def _upload(self, local: Path, blob: Blob) -> Blob:
        key = self._key(blob.sha256)
        try:
            if self._fs.exists(key):
                return blob
            # Upload under a staging name then move, so a partial upload never has the key.
            staged = f"{self._root}/.staging/{uuid.uuid4().hex}"
            self._fs.makedirs(f"{self._root}/.staging", exist_ok=True)
            self._fs.put_file(str(local), staged)
            self._fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            self._fs.mv(staged, key)
        except OSError as exc:
            raise Unavailable(f"cannot upload a blob to {self.url}: {exc}") from exc
        return blob

    def put_file(self, path: Path) -> Blob:
        # Cache first: that hashes the file and leaves a verified local copy for path().
        blob = self.cache.put_file(path)
        return self._upload(self.cache.path(blob.sha256), blob)

    def put_bytes(self, data: bytes) -> Blob:
        blob = self.cache.put_bytes(data)
        return self._upload(self.cache.path(blob.sha256), blob)

    def exists(self, sha256: str) -> bool:
        try:
            return bool(self._fs.exists(self._key(sha256)))
        except OSError as exc:
            raise Unavailable(f"cannot reach blob store {self.url}: {exc}") from exc

    def path(self, sha256: str) -> Path:
        if self.cache.exists(sha256):
            return self.cache.path(sha256)
        local = self.cache.root / ".staging" / f"download-{uuid.uuid4().hex}"
        try:
            self._fs.get_file(self._key(sha256), str(local))
            got = self.cache.put_file(local)
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} is missing from {self.url}") from exc
        except OSError as exc:
            raise Unavailable(f"cannot download blob {sha256} from {self.url}: {exc}") from exc
        finally:
            local.unlink(missing_ok=True)
        if got.sha256 != sha256:
            raise Unavailable(
                f"blob {sha256} in {self.url} is corrupt (its content hashes to {got.sha256})"
            )
        return self.cache.path(sha256)

    def verify(self, sha256: str) -> bool:
        try:
            with self._fs.open(self._key(sha256), "rb") as stream:
                return hash_stream(stream).sha256 == sha256
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise Unavailable(f"cannot read blob {sha256} from {self.url}: {exc}") from exc


def open_blob_store(location: str | Path, cache_dir: Path | None = None) -> BlobStore:
    """A local directory (or `file://` URL) gets a LocalBlobStore; any other URL goes to fsspec,
    which needs `cache_dir` for verified local copies."""
    if isinstance(location, Path) or "://" not in location:
        return LocalBlobStore(Path(location).expanduser())
    if location.startswith("file://"):
        return LocalBlobStore(Path(location.removeprefix("file://")))
    if cache_dir is None:
        raise InvalidArgument(
            f"blob store {location!r} is remote: give a cache_dir for local copies"
        )
    return FsspecBlobStore(location, cache_dir)


__all__ = [
    "Blob",
    "BlobStore",
    "FsspecBlobStore",
    "LocalBlobStore",
    "blob_key",
    "check_digest",
    "hash_stream",
    "open_blob_store",
]
