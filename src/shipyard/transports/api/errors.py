"""Errors of the management API: ShipyardError kinds to statuses (the data plane's one table,
transports/rest/errors.py) and every body as {"error": message}.

Request validation failures name the field; INTERNAL errors are logged, never returned.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.auth import tokens
from shipyard.core.errors import ShipyardError
from shipyard.transports.rest.errors import INTERNAL_MESSAGE, error_status, public_message

log = logging.getLogger("shipyard.server")


class ErrorBody(BaseModel):
    error: str


class BodyTooLarge(HTTPException):
    """Raised from the body reader when a request streams past its limit; an HTTPException
    so FastAPI's body parser lets it through instead of calling it a parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes")


_DOCUMENTED = (400, 401, 403, 404, 409, 412, 413, 415, 422)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": "error"} for status in _DOCUMENTED
}


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _field(error: dict[str, Any]) -> str:
    # ("body", "weight") -> "weight"; ("query", "limit") -> "limit"; the location is implied.
    parts = [str(part) for part in error.get("loc", ())]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _shipyard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShipyardError)
    status = error_status(exc)
    if status >= 500:
        log.error("%s %s failed: %r", request.method, request.url.path, exc)
    return error_response(status, public_message(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(422, "invalid request")
    first = errors[0]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, f"field {_field(first)!r}: {message}{more}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405) and "route" not in request.scope:
        # A path that matches nothing: only a caller with a valid key may learn that.
        refused = await anyio.to_thread.run_sync(_refused, request)
        if refused is not None:
            return error_response(error_status(refused), refused.message)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    response = error_response(exc.status_code, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _refused(request: Request) -> ShipyardError | None:
    token = tokens.bearer_token(request.headers.get("authorization"))
    try:
        request.app.state.services.keys.authenticate(token)
    except ShipyardError as exc:
        return exc
    return None


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, INTERNAL_MESSAGE)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ShipyardError, _shipyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
