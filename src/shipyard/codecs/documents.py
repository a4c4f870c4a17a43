"""Documents people write by hand (rollout policies, pipeline configs): YAML or JSON read with
a size bound, validated into a pydantic model, and an error that names the first bad field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from shipyard.core.errors import InvalidArgument

M = TypeVar("M", bound=BaseModel)


def validate_document(model: type[M], data: object, *, field_label: str, shape: str) -> M:
    """`data` (already parsed) as `model`; `shape` says what a valid document looks like."""
    if not isinstance(data, dict):
        raise InvalidArgument(shape)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidArgument(f"{field_label} {where!r}: {message}{more}") from None


def read_yaml(path: Path, *, what: str, max_bytes: int) -> object:
    """The parsed content of a YAML (or JSON) file of at most `max_bytes`."""
    try:
        with path.open("rb") as file:
            raw = file.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise InvalidArgument(f"{what} {path} is over {max_bytes} bytes")
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{what} {path} is not valid YAML: {exc}") from None
