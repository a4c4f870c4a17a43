"""Pinned requirements of a bundle: what its flavor needs, at the versions installed here."""

from __future__ import annotations

from importlib import metadata
from typing import Any

# Distributions a flavor needs at load time (beyond numpy and pandas, which every flavor uses).
FLAVOR_PACKAGES: dict[str, tuple[str, ...]] = {
    "sklearn": ("scikit-learn", "skops", "scipy"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "onnx": ("onnx", "onnxruntime"),
    "torch": ("torch",),
    "pyfunc": (),
}
_BASE = ("numpy", "pandas")
_COMPILED = ("onnxruntime",)


def needed_packages(flavor: str, *, compiled: bool) -> list[str]:
    """Distribution names for `flavor` (+ onnxruntime for a compiled artifact), deduplicated."""
    wanted = [*_BASE, *FLAVOR_PACKAGES.get(flavor, ()), *(_COMPILED if compiled else ())]
    return list(dict.fromkeys(wanted))


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def requirements_text(flavor: str, *, compiled: bool) -> str:
    """requirements.txt lines `name==version`; packages missing here are listed as comments."""
    lines = [f"# pinned from the environment that exported this bundle (flavor {flavor})"]
    shipyard = _installed("shipyard")
    lines.append(f"shipyard=={shipyard}" if shipyard else "shipyard")
    for name in needed_packages(flavor, compiled=compiled):
        version = _installed(name)
        lines.append(f"{name}=={version}" if version else f"# {name}: not installed at export")
    return "\n".join(lines) + "\n"


def shipyard_version() -> str:
    return _installed("shipyard") or "unknown"


# Where a bundle's image runs: markers are evaluated for it, not for the exporting machine.
def target_environment(python_version: str) -> dict[str, str]:
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def _dependencies(distribution: str, extras: frozenset[str], env: dict[str, str]) -> list[Any]:
    from packaging.requirements import InvalidRequirement, Requirement

    found: list[Any] = []
    for line in metadata.requires(distribution) or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is None or any(
            marker.evaluate({**env, "extra": extra}) for extra in (extras or {""})
        ):
            found.append(requirement)
    return found


def pinned_closure(roots: list[str], *, python_version: str) -> list[str]:
    """`name==version` for every installed distribution `roots` need (with their extras),
    sorted: a pip constraints file that reproduces this environment's versions."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = target_environment(python_version)
    pending = [Requirement(root) for root in roots]
    seen: dict[str, str] = {}
    expanded: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        version = _installed(requirement.name)
        key = (name, frozenset(requirement.extras))
        if version is None or key in expanded:
            continue  # not installed here: pip resolves it in the image, unpinned
        expanded.add(key)
        seen[name] = version
        pending.extend(_dependencies(requirement.name, key[1], env))
    return [f"{name}=={version}" for name, version in sorted(seen.items())]
