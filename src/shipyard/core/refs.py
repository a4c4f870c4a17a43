"""Model names and references: `name`, `name:3`, `name@alias`.

Names become URL path segments and ledger keys, so they are checked against an allowlist
(never used as file paths: blob keys are content hashes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.core.errors import InvalidArgument

MAX_NAME_LENGTH = 200
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_ALIAS = re.compile(r"[A-Za-z](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")


def check_name(name: str, what: str = "model name") -> str:
    """Return `name` if it is a safe identifier, else raise InvalidArgument saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"{what} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if "\x00" in name:
        raise InvalidArgument(f"{what} must not contain NUL bytes")
    if ".." in name or "/" in name or "\\" in name:
        raise InvalidArgument(f"{what} {name!r} must not contain '/', '\\' or '..'")
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"{what} {name!r} may use letters, digits, '.', '_' and '-', "
            "and must start and end with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    """Aliases start with a letter so they can never be confused with a version number."""
    check_name(alias, "alias")
    if not _ALIAS.fullmatch(alias):
        raise InvalidArgument(
            f"alias {alias!r} must start with a letter and use letters, digits, '_' and '-'"
        )
    return alias


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgument(f"version must be a positive integer, got {version!r}")
    return version


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A reference to one model version: by number, by alias, or the latest READY one."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.version is not None and self.alias is not None:
            raise InvalidArgument("a model reference takes a version or an alias, not both")
        if self.version is not None:
            check_version(self.version)
        if self.alias is not None:
            check_alias(self.alias)

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse `name`, `name:3` or `name@alias`."""
        if not isinstance(text, str):
            raise InvalidArgument(f"model reference must be a string, got {type(text).__name__}")
        if "@" in text:
            name, _, alias = text.partition("@")
            return cls(name, alias=alias)
        if ":" in text:
            name, _, number = text.partition(":")
            if not number.isdigit() or not number.isascii():
                raise InvalidArgument(f"version in {text!r} must be a positive integer")
            return cls(name, version=int(number))
        return cls(text)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name
