"""The REST data plane as one bare ASGI callable: route, bound, call a handler, map errors.

No framework on the hot path: an exact-match dict and a small parser route (routes.py), a
handler turns a Request into (status, body, content type, headers), and this module is the
one place that applies the error table, API keys (auth.py: checked right after routing,
before any body is read), the in-flight cap, the per-request timeout, the access log and
request metrics.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from shipyard.codecs.limits import DEFAULT_LIMITS, Limits
from shipyard.codecs.oip import encode_error
from shipyard.core.errors import Internal, ShipyardError, Unavailable
from shipyard.transports.rest import routes
from shipyard.transports.rest.auth import ANY_KEY, Guard, Needs, request_token
from shipyard.transports.rest.auth import endpoint_scopes as _endpoint_scopes
from shipyard.transports.rest.deadlines import DeadlineExceeded, Deadlines
from shipyard.transports.rest.errors import (
    RETRY_AFTER_S,
    MethodNotAllowed,
    Timeout,
    error_status,
    public_message,
)
from shipyard.transports.rest.health import Exporter, HealthHandlers, Lifecycle
from shipyard.transports.rest.http import (
    JSON,
    ClientDisconnected,
    Headers,
    Receive,
    Request,
    Scope,
    Send,
    respond,
)
from shipyard.transports.rest.kserve import KserveHandlers
from shipyard.transports.rest.mlflow import MlflowHandlers
from shipyard.transports.rest.oip import OipHandlers
from shipyard.transports.rest.plane import Plane, RequestObserver
from shipyard.transports.rest.requestlog import AccessLog
from shipyard.transports.rest.response import Handler

log = logging.getLogger("shipyard.transports.rest")

Hook = Callable[[], Awaitable[None]]
_GET = ("GET",)
_V2 = "rest-v2"  # protocol labels, shared with the gRPC transport's "grpc-v2"
_V1 = "kserve-v1"
_POST = ("POST",)
_OK = "OK"  # metrics outcome of a success; errors use their ErrorKind value
_UNKNOWN_MODEL = "-"  # metrics label for names never served: callers cannot add label values


@dataclass(frozen=True, slots=True)
class RestOptions:
    limits: Limits = DEFAULT_LIMITS
    request_timeout_s: float = 30.0
    max_in_flight: int = 1024  # per worker; past it 503 + Retry-After
    access_log: bool = True
    metrics_public: bool = False  # with a Guard: /metrics without a key


@dataclass(frozen=True, slots=True)
class _Endpoint:
    methods: tuple[str, ...]
    handler: Handler
    protocol: str
    inference: bool = False


class RestApp:
    """ASGI 3 application. `startup`/`shutdown` hooks run on lifespan events."""

    def __init__(
        self,
        plane: Plane,
        *,
        options: RestOptions | None = None,
        observer: RequestObserver | None = None,
        exporter: Exporter | None = None,
        lifecycle: Lifecycle | None = None,
        startup: Sequence[Hook] = (),
        shutdown: Sequence[Hook] = (),
        guard: Guard | None = None,
    ) -> None:
        self.options = options or RestOptions()
        self.lifecycle = lifecycle or Lifecycle()
        self._observer = observer
        self._access = AccessLog(self.options.access_log)
        self._guard = guard
        self._needs = _endpoint_scopes(metrics_public=self.options.metrics_public)
        self._startup, self._shutdown = tuple(startup), tuple(shutdown)
        self._in_flight = 0
        self._deadlines = Deadlines(self.options.request_timeout_s)
        self._served_models: set[str] = set()
        self._endpoints = _endpoints(plane, self.options.limits, self.lifecycle, exporter)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request = Request(scope, receive)
        protocol, inference, status = "-", False, 500
        outcome: str | None = _OK
        key: str | None = None
        try:
            endpoint, request.model, request.version = await self._route(request)
            entry = self._endpoints[endpoint]
            protocol, inference = entry.protocol, entry.inference
            if self._guard is not None:
                key = await self._authenticate(request, self._needs[endpoint])
            if request.method not in entry.methods:
                raise MethodNotAllowed(request.method, entry.methods)
            if inference:
                response = await self._bounded(entry.handler, request)
            else:
                response = await entry.handler(request)
            status = response[0]
            await respond(send, request, status, response[1], response[2], response[3])
        except ClientDisconnected:
            status, outcome = 499, None  # nginx's word for it: nobody to answer
        except Exception as exc:  # the one place errors become responses
            status, outcome = await self._error(send, request, exc)
        seconds = time.perf_counter() - start
        self._record(request, protocol, inference, status, outcome, seconds, key)

    async def _route(self, request: Request) -> routes.Route:
        try:
            return routes.match(request.path)
        except ShipyardError:
            # With keys on, only a valid key learns which paths exist (404 / 400 vs 401).
            await self._authenticate(request, ANY_KEY)
            raise

    async def _authenticate(self, request: Request, needs: Needs) -> str | None:
        """The caller's principal (`key:<id>`), or None for open endpoints or without keys."""
        if self._guard is None or not needs:
            return None
        key = await self._guard.check(request_token(request.headers), needs)
        return key.principal

    async def _bounded(
        self, handler: Handler, request: Request
    ) -> tuple[int, bytes, bytes, Headers | None]:
        if self._in_flight >= self.options.max_in_flight:
            raise Unavailable("the server is at capacity; retry shortly")
        self._in_flight += 1
        try:
            return await self._deadlines.run(handler(request))
        except DeadlineExceeded:
            raise Timeout(
                f"the request did not finish within {self.options.request_timeout_s:g} s"
            ) from None
        finally:
            self._in_flight -= 1

    async def _error(self, send: Send, request: Request, exc: Exception) -> tuple[int, str]:
        if not isinstance(exc, ShipyardError):
            log.error(
                "unexpected error on %s %s",
                request.method,
                request.path[:200],
                exc_info=exc,
                extra={"request_id": request.request_id},
            )
            exc = Internal("unexpected error")
        elif exc.kind.value == "INTERNAL":
            log.error("internal error: %s", exc.message, extra={"request_id": request.request_id})
        status = error_status(exc)
        extra: Headers = []
        if status in (503, 504):
            extra.append((b"retry-after", RETRY_AFTER_S))
        if isinstance(exc, MethodNotAllowed):
            extra.append((b"allow", ", ".join(exc.allowed).encode("ascii")))
        # The connection may be gone, or a response half sent: the status is still logged.
        with contextlib.suppress(OSError, RuntimeError):
            await respond(send, request, status, encode_error(public_message(exc)), JSON, extra)
        return status, exc.kind.value

    def _record(
        self,
        request: Request,
        protocol: str,
        inference: bool,
        status: int,
        outcome: str | None,
        seconds: float,
        key: str | None = None,
    ) -> None:
        if self._observer is not None and inference and outcome is not None:
            model = request.model
            if outcome is _OK and model is not None:
                self._served_models.add(model)
            elif model not in self._served_models:
                model = _UNKNOWN_MODEL
            self._observer.observe_request(
                model or _UNKNOWN_MODEL, request.version or "", protocol, outcome, seconds
            )
        if self._access.enabled:
            self._access.write(
                request.request_id,
                request.method,
                request.path,
                status,
                seconds,
                request.model,
                request.version,
                protocol,
                key,
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._run_hooks(send, self._startup, "startup")
            elif message["type"] == "lifespan.shutdown":
                self.lifecycle.draining = True
                self._deadlines.close()
                await self._run_hooks(send, self._shutdown, "shutdown")
                return

    async def _run_hooks(self, send: Send, hooks: Sequence[Hook], phase: str) -> None:
        try:
            for hook in hooks:
                await hook()
        except Exception as exc:
            log.exception("%s failed", phase)
            await send({"type": f"lifespan.{phase}.failed", "message": str(exc)[:500]})
            return
        await send({"type": f"lifespan.{phase}.complete"})


def _endpoints(
    plane: Plane, limits: Limits, lifecycle: Lifecycle, exporter: Exporter | None
) -> dict[str, _Endpoint]:
    oip = OipHandlers(plane, limits)
    health = HealthHandlers(plane, lifecycle, exporter)
    kserve = KserveHandlers(plane, limits)
    mlflow = MlflowHandlers(plane, limits)
    return {
        routes.SERVER_METADATA: _Endpoint(_GET, oip.server_metadata, _V2),
        routes.LIVE: _Endpoint(_GET, health.live, _V2),
        routes.READY: _Endpoint(_GET, health.ready, _V2),
        routes.REPOSITORY_INDEX: _Endpoint(_POST, oip.repository_index, _V2),
        routes.MODEL_METADATA: _Endpoint(_GET, oip.model_metadata, _V2),
        routes.MODEL_READY: _Endpoint(_GET, oip.model_ready, _V2),
        routes.INFER: _Endpoint(_POST, oip.infer, _V2, inference=True),
        routes.LOAD: _Endpoint(_POST, oip.load, _V2),
        routes.UNLOAD: _Endpoint(_POST, oip.unload, _V2),
        routes.V1_MODEL: _Endpoint(_GET, kserve.model, _V1),
        routes.V1_PREDICT: _Endpoint(_POST, kserve.predict, _V1, inference=True),
        routes.INVOCATIONS: _Endpoint(_POST, mlflow.invocations, "mlflow", inference=True),
        routes.PING: _Endpoint(_GET, health.ready, "mlflow"),
        routes.HEALTH: _Endpoint(_GET, health.ready, "mlflow"),
        routes.VERSION: _Endpoint(_GET, health.version, "mlflow"),
        routes.METRICS: _Endpoint(_GET, health.metrics, "metrics"),
    }
