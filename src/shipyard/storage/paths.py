"""Realpath containment: turn an untrusted relative path into a path that stays inside a root."""

from __future__ import annotations

import os
import re
from pathlib import Path

from shipyard.core.errors import InvalidArgument

MAX_RELATIVE_LENGTH = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")


def contained(root: Path, relative: str) -> Path:
    """Resolve `relative` under `root`, refusing anything that could end up outside it.

    Absolute paths, drive letters, `..` components and NUL bytes are refused outright; the
    result is then resolved with realpath so a symlink pointing out of `root` is refused too.
    """
    if not isinstance(relative, str) or not relative:
        raise InvalidArgument("path must be a non-empty string")
    if len(relative) > MAX_RELATIVE_LENGTH:
        raise InvalidArgument(f"path is longer than {MAX_RELATIVE_LENGTH} characters")
    if "\x00" in relative:
        raise InvalidArgument("path must not contain NUL bytes")
    if relative.startswith(("/", "\\")) or _DRIVE.match(relative):
        raise InvalidArgument(f"path {relative!r} must be relative")
    # Backslashes count as separators so a Windows-style '..\\' is caught on POSIX too.
    if ".." in re.split(r"[/\\]", relative):
        raise InvalidArgument(f"path {relative!r} must not contain '..'")
    base = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(base, relative))
    if os.path.commonpath([base, resolved]) != base:
        raise InvalidArgument(f"path {relative!r} resolves outside its root")
    return Path(resolved)
