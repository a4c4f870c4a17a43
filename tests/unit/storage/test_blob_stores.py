"""Content-addressed blob stores: local (atomic, fsynced) and fsspec (memory://, file://)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest

from shipyard.core.errors import InvalidArgument, NotFound
from shipyard.storage.blobs import (
    Blob,
    BlobStore,
    FsspecBlobStore,
    LocalBlobStore,
    open_blob_store,
)

DATA = b"model weights \x00\x01" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def test_local_put_bytes_lays_blobs_out_by_hash(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    blob = store.put_bytes(DATA)
    assert blob == Blob(SHA, len(DATA))
    assert store.path(SHA) == tmp_path / "blobs" / "sha256" / SHA[:2] / SHA[2:]
    assert store.path(SHA).read_bytes() == DATA
    assert store.exists(SHA) and store.verify(SHA)
    assert list((tmp_path / "blobs" / ".staging").iterdir()) == []


def test_local_put_file_streams_and_does_not_rewrite(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(DATA)
    store = LocalBlobStore(tmp_path / "blobs")
    first = store.put_file(source)
    stat = store.path(SHA).stat()
    assert store.put_file(source) == first == Blob(SHA, len(DATA))
    assert store.path(SHA).stat().st_ino == stat.st_ino  # same file, not replaced


def test_local_verify_detects_corruption_and_absence(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes(DATA)
    target = store.path(SHA)
    target.chmod(0o644)
    target.write_bytes(b"tampered")
    assert not store.verify(SHA)
    other = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(other) and not store.verify(other)
    with pytest.raises(NotFound, match="missing"):
        store.path(other)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ABC", SHA.upper(), SHA[:-1], SHA + "0"])
def test_digests_are_checked_before_use_as_paths(tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidArgument):
        LocalBlobStore(tmp_path).path(digest)


def test_missing_source_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LocalBlobStore(tmp_path / "b").put_file(tmp_path / "nope")


def test_stale_staging_files_are_cleaned_at_open(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path)
    stale, fresh = tmp_path / ".staging" / uuid.uuid4().hex, tmp_path / ".staging" / "fresh"
    stale.write_bytes(b"half a blob")
    fresh.write_bytes(b"someone writing now")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    LocalBlobStore(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_crash_before_rename_leaves_no_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Exception, match="disk gone"):
        store.put_bytes(DATA)
    assert not store.exists(SHA)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_store_round_trip_through_verified_cache(tmp_path: Path, scheme: str) -> None:
    location = (
        f"memory://shipyard-{uuid.uuid4().hex}"
        if scheme == "memory"
        else f"file://{tmp_path / 'remote'}"
    )
    store = FsspecBlobStore(location, tmp_path / "cache")
    assert isinstance(store, BlobStore)
    source = tmp_path / "m.bin"
    source.write_bytes(DATA)
    assert store.put_file(source) == Blob(SHA, len(DATA))
    assert store.put_bytes(DATA) == Blob(SHA, len(DATA))
    assert store.exists(SHA) and store.verify(SHA)
    # A second store with an empty cache downloads and verifies.
    reader = FsspecBlobStore(location, tmp_path / "cache2")
    assert not reader.cache.exists(SHA)
    assert reader.path(SHA).read_bytes() == DATA
    missing = hashlib.sha256(b"x").hexdigest()
    assert not reader.exists(missing)
    with pytest.raises(NotFound):
        reader.path(missing)


def test_fsspec_store_refuses_corrupt_remote_blob(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    store = FsspecBlobStore(f"file://{remote}", tmp_path / "cache")
    store.put_bytes(DATA)
    key = remote / "sha256" / SHA[:2] / SHA[2:]
    key.write_bytes(b"bit rot")
    reader = FsspecBlobStore(f"file://{remote}", tmp_path / "cache2")
    assert not reader.verify(SHA)
    with pytest.raises(Exception, match="corrupt"):
        reader.path(SHA)
    assert not reader.cache.exists(SHA)


def test_open_blob_store_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(tmp_path / "a", tmp_path / "c"), LocalBlobStore)
    assert isinstance(open_blob_store(str(tmp_path / "b")), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path / 'f'}"), LocalBlobStore)
    assert isinstance(open_blob_store("memory://x", tmp_path / "c"), FsspecBlobStore)
    with pytest.raises(InvalidArgument, match="cache_dir"):
        open_blob_store("memory://x")
