"""The REST error table covers every ErrorKind, and INTERNAL never leaks its message."""

from __future__ import annotations

import pytest

from shipyard.core.errors import ErrorKind, Internal, NotFound, ShipyardError
from shipyard.transports.rest.errors import (
    HTTP_STATUS,
    INTERNAL_MESSAGE,
    MethodNotAllowed,
    Timeout,
    error_status,
    public_message,
)


def test_every_error_kind_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorKind)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (ErrorKind.INVALID_ARGUMENT, 400),
        (ErrorKind.NOT_FOUND, 404),
        (ErrorKind.CONFLICT, 409),
        (ErrorKind.FAILED_PRECONDITION, 412),
        (ErrorKind.UNAUTHENTICATED, 401),
        (ErrorKind.PERMISSION_DENIED, 403),
        (ErrorKind.PAYLOAD_TOO_LARGE, 413),
        (ErrorKind.UNSUPPORTED_MEDIA, 415),
        (ErrorKind.UNAVAILABLE, 503),
        (ErrorKind.INTERNAL, 500),
    ],
)
def test_statuses(kind: ErrorKind, status: int) -> None:
    assert error_status(ShipyardError("x", kind=kind)) == status


def test_http_only_refinements() -> None:
    assert error_status(MethodNotAllowed("PUT", ("GET",))) == 405
    assert error_status(Timeout("slow")) == 504


def test_internal_details_stay_in_the_log() -> None:
    assert public_message(Internal("db password is hunter2")) == INTERNAL_MESSAGE
    assert public_message(NotFound("no model 'x'")) == "no model 'x'"
