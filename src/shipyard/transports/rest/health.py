"""Liveness, readiness (OIP and MLflow spellings), version and the Prometheus exporter.

`Lifecycle.draining` is set the moment the server is asked to stop (SIGTERM): readiness
answers 503 from then on while in-flight and late requests are still served.
"""

from __future__ import annotations

from collections.abc import Callable

from shipyard.codecs import oip
from shipyard.transports.rest.http import JSON, TEXT_PLAIN, Request
from shipyard.transports.rest.plane import Plane
from shipyard.transports.rest.response import Response

# Returns the exposition body and its content type.
Exporter = Callable[[], tuple[bytes, str]]

_READY = oip.encode_ready(True)
_NOT_READY = oip.encode_ready(False)
_LIVE = oip.encode_live(True)
_NOT_LIVE = oip.encode_live(False)


class Lifecycle:
    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False


class HealthHandlers:
    def __init__(self, plane: Plane, lifecycle: Lifecycle, exporter: Exporter | None) -> None:
        self._plane = plane
        self._lifecycle = lifecycle
        self._exporter = exporter

    def is_ready(self) -> bool:
        return not self._lifecycle.draining and self._plane.ready()

    async def live(self, request: Request) -> Response:
        if self._plane.live():
            return 200, _LIVE, JSON, None
        return 503, _NOT_LIVE, JSON, None

    async def ready(self, request: Request) -> Response:
        if self.is_ready():
            return 200, _READY, JSON, None
        return 503, _NOT_READY, JSON, _RETRY

    async def version(self, request: Request) -> Response:
        return 200, self._plane.server_metadata().version.encode(), b"text/plain", None

    async def metrics(self, request: Request) -> Response:
        if self._exporter is None:
            return 200, b"", TEXT_PLAIN, None
        body, content_type = self._exporter()
        return 200, body, content_type.encode("latin-1"), None


_RETRY = [(b"retry-after", b"1")]
