"""Bundle archives (.tar.gz): written from a directory, read back only after checking every member.

The one choke point for archive extraction (security rule 3): before anything is written, every
member must be a regular file or a directory with a relative name that stays inside the target,
without `..`, backslashes, NUL or duplicates; the member count and the total size are bounded
(decompression bombs). Extraction then also runs with tarfile's `data` filter.
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.core.errors import InvalidArgument, PayloadTooLarge

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 16 * 1024**3
MAX_NAME_LENGTH = 1024
_MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    members: int = MAX_MEMBERS
    total_bytes: int = MAX_TOTAL_BYTES


def check_relative_name(name: str, what: str = "archive member") -> PurePosixPath:
    """A relative POSIX path of plain segments, or InvalidArgument naming it."""
    shown = repr(name[:200])
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} {shown} has an empty or overlong name")
    if "\x00" in name or "\\" in name:
        raise InvalidArgument(f"{what} {shown} contains NUL or a backslash")
    if name.startswith("/"):
        raise InvalidArgument(f"{what} {shown} is an absolute path")
    canonical = name.removesuffix("/")
    while canonical.startswith("./"):
        canonical = canonical[2:]
    parts = canonical.split("/")
    if ".." in parts:
        raise InvalidArgument(f"{what} {shown} leaves its directory ('..')")
    if any(part in ("", ".") for part in parts):
        raise InvalidArgument(f"{what} {shown} has an empty or '.' path segment")
    if len(parts) > _MAX_DEPTH:
        raise InvalidArgument(f"{what} {shown} is nested too deeply")
    return PurePosixPath(*parts)


def _check_member(member: tarfile.TarInfo, seen: set[PurePosixPath]) -> int:
    """Check one member; return the bytes it will write."""
    name = check_relative_name(member.name)
    if not (member.isreg() or member.isdir()):
        raise InvalidArgument(
            f"archive member {member.name[:200]!r} is a link, device or fifo; "
            "bundles hold only regular files and directories"
        )
    if name in seen:
        raise InvalidArgument(f"archive member {member.name[:200]!r} appears twice")
    seen.add(name)
    if member.size < 0:
        raise InvalidArgument(f"archive member {member.name[:200]!r} has a negative size")
    return member.size if member.isreg() else 0


def check_members(
    members: list[tarfile.TarInfo], limits: ArchiveLimits = ArchiveLimits()
) -> list[tarfile.TarInfo]:
    """Validate a whole member list before any extraction."""
    if len(members) > limits.members:
        raise PayloadTooLarge(f"archive has {len(members)} members; the limit is {limits.members}")
    seen: set[PurePosixPath] = set()
    total = 0
    for member in members:
        total += _check_member(member, seen)
        if total > limits.total_bytes:
            raise PayloadTooLarge(
                f"archive expands to more than {limits.total_bytes:,} bytes; refused"
            )
    files = {check_relative_name(m.name) for m in members if m.isreg()}
    for name in seen:
        if any(parent in files for parent in name.parents):
            raise InvalidArgument(f"archive member {str(name)!r} is inside a file")
    return members


def _is_root_entry(member: tarfile.TarInfo) -> bool:
    """The `.` directory entry of `tar -C DIR .`: nothing to write, safe to skip."""
    return member.isdir() and member.name.rstrip("/") in (".", "")


def extract_archive(archive: Path, target: Path, limits: ArchiveLimits = ArchiveLimits()) -> Path:
    """Extract `archive` into the empty or new directory `target`, checking members first.

    On any failure the target is emptied again (it was empty, so only our writes go)."""
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise InvalidArgument(f"extraction target {target} is not empty")
    root = target.resolve()
    try:
        _extract_checked(archive, root, limits)
    except BaseException:
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise
    return root


def _extract_checked(archive: Path, root: Path, limits: ArchiveLimits) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in _read_members(tar, limits) if not _is_root_entry(m)]
            check_members(members, limits)
            for member in members:
                destination = (root / check_relative_name(member.name)).resolve()
                if not destination.is_relative_to(root):
                    raise InvalidArgument(f"archive member {member.name[:200]!r} escapes")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) and not archive.exists():
            raise InvalidArgument(f"no such archive {archive}") from None
        raise InvalidArgument(f"{archive.name} is not a readable .tar.gz: {exc}") from None


def _read_members(tar: tarfile.TarFile, limits: ArchiveLimits) -> list[tarfile.TarInfo]:
    """Read the member list, stopping early when an archive has too many members."""
    members: list[tarfile.TarInfo] = []
    while (member := tar.next()) is not None:
        members.append(member)
        if len(members) > limits.members:
            raise PayloadTooLarge(f"archive has more than {limits.members} members; refused")
    return members


def write_archive(source: Path, archive: Path) -> Path:
    """Write the regular files under `source` (sorted, relative names, no owners) as .tar.gz."""
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for path in sorted(source.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise InvalidArgument(f"{path} is not a regular file or directory")
            info = tar.gettarinfo(str(path), arcname=path.relative_to(source).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_dir():
                tar.addfile(info)
                continue
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return archive
