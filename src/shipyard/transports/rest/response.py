"""What a handler returns: status, body, content type and extra headers (sent by the app)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shipyard.serving.types import Served
from shipyard.transports.rest.http import Headers, Request

Response = tuple[int, bytes, bytes, Headers | None]
Handler = Callable[[Request], Awaitable[Response]]

MODEL_VERSION_HEADER = b"x-shipyard-model-version"


def version_header(version: str | int) -> Headers:
    return [(MODEL_VERSION_HEADER, str(version).encode("ascii"))]


def answered_by(requested: str | None, served: Served) -> str:
    """The version label: the bare number for a model, `model:version` when a deployment
    (a name other than the answering model's) routed the request."""
    if served.name == requested:
        return str(served.version)
    return f"{served.name}:{served.version}"
