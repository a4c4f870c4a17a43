"""Validation of everything a registry write stores, done before any side effect.

PostgreSQL refuses NUL characters in text and JSON and NaN in JSON, so those are rejected
here with a clear message instead of surfacing later as a database error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.core.errors import InvalidArgument
from shipyard.registry.models import STAGES, VersionSpec

MAX_TEXT = 10_000
MAX_JSON_BYTES = 1 << 20
MAX_TAG_KEY = 200
MAX_TAG_VALUE = 1_000
MAX_ARTIFACT_NAME = 500
_FLAVOR = re.compile(r"[a-z][a-z0-9_.-]{0,99}")
_ACTION = re.compile(r"[a-z][a-z0-9_.-]{0,99}")
_SEGMENT = re.compile(r"[A-Za-z0-9_+=@-][A-Za-z0-9._+=@-]*")


def check_text(value: str | None, what: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidArgument(f"{what} is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return value


def check_actor(actor: str) -> str:
    if not actor or not actor.strip():
        raise InvalidArgument("actor must be a non-empty string")
    return str(check_text(actor, "actor", 200))


def check_json(value: Any, what: str) -> Any:
    """A plain-JSON deep copy of `value` (finite numbers, string keys, no NUL)."""
    try:
        encoded = json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"{what} must be plain JSON (finite numbers, string keys): {exc}"
        ) from exc
    if len(encoded) > MAX_JSON_BYTES:
        raise InvalidArgument(f"{what} is larger than {MAX_JSON_BYTES} bytes as JSON")
    if "\\u0000" in encoded:
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return json.loads(encoded)


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidArgument(f"tags must be a mapping of strings, got {type(tags).__name__}")
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument("tag keys must be non-empty strings")
        if not isinstance(value, str):
            raise InvalidArgument(
                f"tag {key!r} must have a string value, got {type(value).__name__}"
            )
        check_text(key, "tag key", MAX_TAG_KEY)
        checked[key] = str(check_text(value, f"tag {key!r}", MAX_TAG_VALUE))
    return checked


def check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for key, value in check_json(dict(metrics), "metrics").items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidArgument(f"metric {key!r} must be a finite number, got {value!r}")
        checked[key] = float(value)
    return checked


def check_action(action: str) -> str:
    if not isinstance(action, str) or not _ACTION.fullmatch(action):
        raise InvalidArgument(
            f"action {action!r} must start with a lowercase letter and use a-z, 0-9, '_', '.', '-' "
            "(at most 100 characters)"
        )
    return action


def check_artifact_name(name: str) -> str:
    """Logical artifact names are relative POSIX paths ('model.onnx', 'tokenizer/vocab.txt')."""
    if not isinstance(name, str) or not name or len(name) > MAX_ARTIFACT_NAME:
        raise InvalidArgument(
            f"artifact name must be a non-empty string of at most {MAX_ARTIFACT_NAME} characters"
        )
    segments = name.split("/")
    if not all(_SEGMENT.fullmatch(part) for part in segments):
        raise InvalidArgument(
            f"artifact name {name!r} must be a relative path of letters, digits and '._+=@-' "
            "(no '..', empty, hidden or absolute parts)"
        )
    return name


def check_files(files: Mapping[str, Path]) -> dict[str, Path]:
    if not isinstance(files, Mapping) or not files:
        raise InvalidArgument("a version needs at least one file")
    checked: dict[str, Path] = {}
    for name, source in sorted(files.items()):
        check_artifact_name(name)
        path = Path(source)
        if not path.is_file():
            raise InvalidArgument(f"artifact {name!r}: {str(path)!r} is not a readable file")
        checked[name] = path
    return checked


def version_values(spec: VersionSpec) -> dict[str, Any]:
    """Column values of a version row, validated."""
    if not isinstance(spec, VersionSpec):
        raise InvalidArgument(f"spec must be a VersionSpec, got {type(spec).__name__}")
    if not isinstance(spec.flavor, str) or not _FLAVOR.fullmatch(spec.flavor):
        raise InvalidArgument(f"flavor {spec.flavor!r} must be a lowercase identifier")
    return {
        "flavor": spec.flavor,
        "signature": None if spec.signature is None else check_json(spec.signature, "signature"),
        "flavor_meta": check_json(dict(spec.flavor_meta), "flavor_meta"),
        "compiled": None if spec.compiled is None else check_json(spec.compiled, "compiled"),
        "description": check_text(spec.description, "description"),
        "tags": check_tags(spec.tags),
        "params": check_json(dict(spec.params), "params"),
        "metrics": check_metrics(spec.metrics),
        "lineage": check_json(spec.lineage.to_dict(), "lineage"),
        "stage": check_stage(spec.stage),
    }


def check_stage(stage: str | None) -> str | None:
    if stage is not None and stage not in STAGES:
        raise InvalidArgument(f"stage must be one of {', '.join(STAGES)} or None, got {stage!r}")
    return stage
