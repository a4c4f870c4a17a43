"""Fill in lineage the caller did not give: code version from git, creator, data fingerprint."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.core.errors import InvalidArgument
from shipyard.core.lineage import Lineage, fingerprint

_LINEAGE_KEYS = {
    "training_data",
    "data",
    "code_version",
    "parent",
    "parent_version",
    "creator",
    "run_id",
    "extra",
}


def git_commit(directory: Path) -> str | None:
    """The commit checked out in `directory` (suffixed `-dirty` with uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = head.stdout.strip()
    return f"{commit}-dirty" if status.stdout.strip() else commit


def build_lineage(given: Lineage | Mapping[str, Any] | None, *, creator: str, cwd: Path) -> Lineage:
    """Turn what the caller gave into a Lineage, filling code version and creator."""
    lineage = _coerce(given)
    return dataclasses.replace(
        lineage,
        code_version=lineage.code_version or git_commit(cwd),
        creator=lineage.creator or creator,
    )


def _coerce(given: Lineage | Mapping[str, Any] | None) -> Lineage:
    if given is None:
        return Lineage()
    if isinstance(given, Lineage):
        return given
    if not isinstance(given, Mapping):
        raise InvalidArgument("lineage must be a shipyard.Lineage or a dict")
    unknown = set(given) - _LINEAGE_KEYS
    if unknown:
        raise InvalidArgument(
            f"unknown lineage keys: {', '.join(sorted(map(str, unknown)))}; "
            f"known: {', '.join(sorted(_LINEAGE_KEYS))}"
        )
    data = given.get("training_data", given.get("data"))
    parent = given.get("parent_version", given.get("parent"))
    if parent is not None and (
        isinstance(parent, bool) or not isinstance(parent, int) or parent < 1
    ):
        raise InvalidArgument(f"lineage parent must be a version number, got {parent!r}")
    return Lineage(
        data=fingerprint(data) if data is not None else None,
        code_version=given.get("code_version"),
        parent_version=parent,
        creator=given.get("creator"),
        run_id=given.get("run_id"),
        extra=dict(given.get("extra") or {}),
    )
