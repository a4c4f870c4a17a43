"""One error type for the whole project, with a transport-neutral kind.

Each transport (REST, gRPC, CLI) maps `ErrorKind` to its own codes in exactly one table.
Messages are written for the caller; internal details go to the log, never into `message`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class ErrorKind(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class ShipyardError(Exception):
    """An error a caller can act on: a kind, a readable message and structured details."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind.value}: {self.message!r})"


class InvalidArgument(ShipyardError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(ShipyardError):
    kind = ErrorKind.NOT_FOUND


class Conflict(ShipyardError):
    kind = ErrorKind.CONFLICT


class FailedPrecondition(ShipyardError):
    kind = ErrorKind.FAILED_PRECONDITION


class Unauthenticated(ShipyardError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(ShipyardError):
    kind = ErrorKind.PERMISSION_DENIED


class PayloadTooLarge(ShipyardError):
    kind = ErrorKind.PAYLOAD_TOO_LARGE


class UnsupportedMedia(ShipyardError):
    kind = ErrorKind.UNSUPPORTED_MEDIA


class Unavailable(ShipyardError):
    kind = ErrorKind.UNAVAILABLE


class Internal(ShipyardError):
    kind = ErrorKind.INTERNAL
