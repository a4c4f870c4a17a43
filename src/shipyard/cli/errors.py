"""The CLI's one table from error kinds to exit codes, and the one place that applies it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rich.console import Console
from rich.markup import escape

from shipyard.core.errors import ErrorKind, ShipyardError

EXIT_CODES: dict[ErrorKind, int] = {
    ErrorKind.INTERNAL: 1,
    ErrorKind.INVALID_ARGUMENT: 3,
    ErrorKind.NOT_FOUND: 4,
    ErrorKind.CONFLICT: 5,
    ErrorKind.FAILED_PRECONDITION: 6,
    ErrorKind.UNAUTHENTICATED: 7,
    ErrorKind.PERMISSION_DENIED: 8,
    ErrorKind.PAYLOAD_TOO_LARGE: 9,
    ErrorKind.UNSUPPORTED_MEDIA: 10,
    ErrorKind.UNAVAILABLE: 11,
}

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 internal error, 2 usage, 3 invalid argument, 4 not found, 5 conflict, "
    "6 failed precondition, 7 unauthenticated, 8 permission denied, 9 too large, "
    "10 unsupported media, 11 unavailable."
)

P = ParamSpec("P")
R = TypeVar("R")


def exits_by_kind(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a ShipyardError into one readable line on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ShipyardError as exc:
            Console(stderr=True, soft_wrap=True).print(
                # escape: "[...]" in a message (pip extras, globs) is text, not markup
                f"[red]error[/red] ({exc.kind.value.lower()}): {escape(exc.message)}",
                highlight=False,
                markup=True,
            )
            sys.exit(EXIT_CODES[exc.kind])

    return wrapper
