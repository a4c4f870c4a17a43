"""The REST transport's one table from error kinds to HTTP statuses, and its one mapper.

Every handler raises `ShipyardError`s; `app.RestApp` is the only place that turns them (and
anything unexpected) into a response through `error_status`. INTERNAL never shows its message
to the caller: details go to the log with the request id.
"""

from __future__ import annotations

from shipyard.core.errors import ErrorKind, ShipyardError

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FAILED_PRECONDITION: 412,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA: 415,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
}

INTERNAL_MESSAGE = "internal error; see the server log for this request id"
RETRY_AFTER_S = b"1"


class MethodNotAllowed(ShipyardError):
    """HTTP-only: the path exists but not for this method (405, with an Allow header)."""

    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"method {method} is not allowed here; use {', '.join(allowed)}")
        self.allowed = allowed


class Timeout(ShipyardError):
    """HTTP-only: the request ran past its deadline (504)."""

    kind = ErrorKind.UNAVAILABLE


def error_status(exc: ShipyardError) -> int:
    """The HTTP status for an error; HTTP-only subclasses refine their kind's status."""
    if isinstance(exc, MethodNotAllowed):
        return 405
    if isinstance(exc, Timeout):
        return 504
    return HTTP_STATUS[exc.kind]


def public_message(exc: ShipyardError) -> str:
    """What the caller sees: the message, except for INTERNAL (which may hold details)."""
    return INTERNAL_MESSAGE if exc.kind is ErrorKind.INTERNAL else exc.message
