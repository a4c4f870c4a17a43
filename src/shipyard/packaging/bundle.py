"""Bundles: one model version as a self-contained directory or .tar.gz, checked on the way in.

Layout: `model/<logical name>` (every artifact, compiled one included), `version.json` (the
version's record), `requirements.txt` (pinned packages of its flavor), `MANIFEST.json` (sha256
and size of every other file) and optionally `MANIFEST.sig` (Ed25519 over the manifest bytes).
A bundle is built in a staging directory next to the output and moved into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, Unavailable
from shipyard.core.refs import ModelRef
from shipyard.packaging import signing
from shipyard.packaging.archive import check_relative_name, extract_archive, write_archive
from shipyard.packaging.register import COMPILED_FILE
from shipyard.packaging.requirements import requirements_text, shipyard_version
from shipyard.registry.models import ModelVersion, VersionStatus
from shipyard.registry.reader import RegistryReader

FORMAT = "shipyard-bundle/1"
MODEL_DIR = "model"
VERSION_FILE = "version.json"
REQUIREMENTS_FILE = "requirements.txt"
MANIFEST_FILE = "MANIFEST.json"
SIGNATURE_FILE = "MANIFEST.sig"
ARCHIVE_SUFFIX = ".tar.gz"
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """A verified bundle: its version record, its files, and whether a signature was checked."""

    path: Path
    name: str
    version: int
    flavor: str
    record: dict[str, Any]
    files: dict[str, FileEntry]
    signed: bool
    signature_verified: bool

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIX)


def _hash_copy(source: Path, destination: Path | None) -> FileEntry:
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as reader:
        writer = destination.open("wb") if destination is not None else None
        try:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if writer is not None:
                    writer.write(chunk)
        finally:
            if writer is not None:
                writer.close()
    return FileEntry(digest.hexdigest(), size)


def version_record(version: ModelVersion) -> dict[str, Any]:
    """What version.json holds: enough to load, serve and trace the version without a registry."""
    return {
        "format": FORMAT,
        "name": version.name,
        "version": version.version,
        "flavor": version.flavor,
        "description": version.description,
        "signature": version.signature,
        "flavor_meta": version.flavor_meta,
        "compiled": version.compiled,
        "lineage": version.lineage.to_dict(),
        "metrics": version.metrics,
        "params": version.params,
        "tags": version.tags,
        "created_at": version.created_at.isoformat(),
        "creator": version.creator,
        "artifacts": {
            name: {"sha256": a.sha256, "size": a.size} for name, a in version.artifacts.items()
        },
        "shipyard_version": shipyard_version(),
    }


def _dump(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode()


# ---------------------------------------------------------------------------- export


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing output unless told; even then replace only what a bundle could be."""
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise Conflict(f"{out} already exists (pass --overwrite to replace it)")
    if out.is_symlink():
        raise FailedPrecondition(f"{out} is a symbolic link; refusing to replace it")
    if is_archive(out):
        if not out.is_file():
            raise FailedPrecondition(f"{out} exists and is not a file; refusing to replace it")
        return
    if not out.is_dir():
        raise FailedPrecondition(f"{out} exists and is not a directory; refusing to replace it")
    if any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise FailedPrecondition(
            f"{out} is a non-empty directory that is not a bundle (no {MANIFEST_FILE}); "
            "refusing to replace it"
        )


def _resolve_ready(registry: RegistryReader, ref: ModelRef | str) -> ModelVersion:
    version = registry.resolve(ref)  # NotFound for unknown; FailedPrecondition unless READY
    if version.status is not VersionStatus.READY:
        raise FailedPrecondition(f"{version.ref} is {version.status.value}, not READY")
    return version


def _write_contents(
    registry: RegistryReader, version: ModelVersion, root: Path, sign_key: Path | None
) -> None:
    files: dict[str, FileEntry] = {}
    for logical, source in sorted(registry.artifact_paths(version).items()):
        relative = f"{MODEL_DIR}/{check_relative_name(logical, 'artifact name').as_posix()}"
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        entry = _hash_copy(source, destination)
        if entry.sha256 != version.artifacts[logical].sha256:
            raise Unavailable(f"blob of {version.ref} artifact {logical!r} is corrupt")
        files[relative] = entry
    extra = {
        VERSION_FILE: _dump(version_record(version)),
        REQUIREMENTS_FILE: requirements_text(
            version.flavor, compiled=COMPILED_FILE in version.artifacts
        ).encode(),
    }
    for relative, data in extra.items():
        (root / relative).write_bytes(data)
        files[relative] = FileEntry(hashlib.sha256(data).hexdigest(), len(data))
    manifest = _dump(
        {
            "format": FORMAT,
            "files": {k: {"sha256": v.sha256, "size": v.size} for k, v in sorted(files.items())},
        }
    )
    (root / MANIFEST_FILE).write_bytes(manifest)
    if sign_key is not None:
        (root / SIGNATURE_FILE).write_bytes(signing.sign(manifest, sign_key))


def _move_into_place(staging: Path, out: Path) -> None:
    if is_archive(out):
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(handle)
        try:
            write_archive(staging, Path(temporary))
            os.replace(temporary, out)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return
    replace_directory(staging, out)


def replace_directory(staging: Path, out: Path) -> None:
    """Move directory `staging` to `out`; a previous `out` is put back if the move fails."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / "bundle")
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old / "bundle", out)  # put the previous bundle back
        raise
    finally:
        shutil.rmtree(old)


def export_bundle(
    registry: RegistryReader,
    ref: ModelRef | str,
    out: Path | str,
    *,
    overwrite: bool = False,
    sign_key: Path | None = None,
) -> Path:
    """Write version `ref` as a bundle at `out` (a directory, or a .tar.gz); return `out`."""
    out = Path(out).absolute()
    _check_output(out, overwrite)
    version = _resolve_ready(registry, ref)
    if sign_key is not None:
        signing.load_private_key(sign_key)  # a bad key fails before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging.", dir=out.parent))
    try:
        _write_contents(registry, version, staging, sign_key)
        _move_into_place(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


# ---------------------------------------------------------------------------- verify


def _read_manifest(root: Path) -> tuple[bytes, dict[str, FileEntry]]:
    path = root / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        raise InvalidArgument(f"bundle file {MANIFEST_FILE} is missing")
    data = path.read_bytes()
    try:
        manifest = json.loads(data)
        if manifest.get("format") != FORMAT:
            raise InvalidArgument(f"{MANIFEST_FILE} is not a {FORMAT} manifest")
        files = {
            check_relative_name(name, "manifest entry").as_posix(): FileEntry(
                str(entry["sha256"]), int(entry["size"])
            )
            for name, entry in manifest["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidArgument(f"bundle file {MANIFEST_FILE} is malformed") from None
    return data, files


def _present_files(root: Path) -> set[str]:
    present: set[str] = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise InvalidArgument(f"bundle file {relative} is a link or special file")
        if path.is_file():
            present.add(relative)
    return present - {MANIFEST_FILE, SIGNATURE_FILE}


def _check_files(root: Path, files: dict[str, FileEntry]) -> None:
    present = _present_files(root)
    for missing in sorted(set(files) - present):
        raise InvalidArgument(f"bundle file {missing} is missing")
    for extra in sorted(present - set(files)):
        raise InvalidArgument(f"bundle file {extra} is not in {MANIFEST_FILE} (extra file)")
    for relative, expected in sorted(files.items()):
        if _hash_copy(root / relative, None) != expected:
            raise InvalidArgument(
                f"bundle file {relative} does not match its sha256 in {MANIFEST_FILE} "
                "(changed after export)"
            )


def _check_signature(
    root: Path, manifest: bytes, public_key: Path | None, shown: Path
) -> tuple[bool, bool]:
    signature = root / SIGNATURE_FILE
    signed = signature.is_file() and not signature.is_symlink()
    if public_key is None:
        return signed, False
    if not signed:
        raise FailedPrecondition(f"bundle {shown} is not signed (no {SIGNATURE_FILE})")
    signing.verify(manifest, signature.read_bytes(), public_key, what=f"bundle {shown}")
    return True, True


def _record(root: Path) -> dict[str, Any]:
    try:
        record = json.loads((root / VERSION_FILE).read_bytes())
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError
        str(record["name"]), int(record["version"]), str(record["flavor"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(f"bundle file {VERSION_FILE} is malformed") from None
    return record


def verify_directory(root: Path, *, public_key: Path | None = None, shown: Path) -> BundleInfo:
    """Check an unpacked bundle at `root`; `shown` is the path named in the result."""
    manifest, files = _read_manifest(root)
    signed, verified = _check_signature(root, manifest, public_key, shown)
    _check_files(root, files)
    if VERSION_FILE not in files:
        raise InvalidArgument(f"bundle file {VERSION_FILE} is missing")
    record = _record(root)
    return BundleInfo(
        shown, record["name"], int(record["version"]), record["flavor"], record, files,
        signed, verified,
    )  # fmt: skip


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise InvalidArgument(f"no bundle at {path}")


def verify_bundle(path: Path | str, *, public_key: Path | None = None) -> BundleInfo:
    """Check every file against the manifest (and the signature with `public_key`)."""
    path = Path(path)
    _require_exists(path)
    if path.is_dir():
        return verify_directory(path, public_key=public_key, shown=path)
    with tempfile.TemporaryDirectory(prefix="shipyard-bundle-") as scratch:
        root = extract_archive(path, Path(scratch) / "bundle")
        return verify_directory(root, public_key=public_key, shown=path)


def open_bundle(
    path: Path | str, *, extract_to: Path | None = None, public_key: Path | None = None
) -> tuple[BundleInfo, dict[str, Path]]:
    """Verify a bundle and return its info and {logical artifact name: local path}.

    A .tar.gz is unpacked into `extract_to` (default: a new temporary directory the caller
    owns and removes)."""
    path = Path(path)
    _require_exists(path)
    if path.is_dir():
        return _opened(verify_directory(path, public_key=public_key, shown=path), path)
    target = extract_to or Path(tempfile.mkdtemp(prefix="shipyard-bundle-"))
    try:
        root = extract_archive(path, target)
        return _opened(verify_directory(root, public_key=public_key, shown=path), root)
    except BaseException:
        if extract_to is None:
            shutil.rmtree(target, ignore_errors=True)
        raise


def _opened(info: BundleInfo, root: Path) -> tuple[BundleInfo, dict[str, Path]]:
    prefix = f"{MODEL_DIR}/"
    artifacts = {
        name.removeprefix(prefix): root / name for name in info.files if name.startswith(prefix)
    }
    return info, artifacts
