"""`ShipyardError.kind` -> gRPC status code: the one table, and the one interceptor applying it.

Every unary RPC goes through `StatusInterceptor`: a `ShipyardError` becomes the status of its
kind with its (caller-facing) message; any other exception is logged with its traceback and
becomes INTERNAL with a generic message and a reference to find the log line. A request that
is not a valid protobuf message is INVALID_ARGUMENT (grpc would otherwise answer INTERNAL).
The interceptor also times inference calls for the optional `RequestMetrics`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
import grpc.aio

from shipyard.core.errors import ErrorKind, InvalidArgument, ShipyardError

log = logging.getLogger(__name__)

STATUS: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNSUPPORTED_MEDIA: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
PROTOCOL = "grpc-v2"  # the `protocol` label of ServingMetrics, beside "rest-v2"
OK = "OK"  # the `status` label of a successful call; failures use their ErrorKind value
_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


class RequestMetrics(Protocol):
    """What the transport reports per inference call (`serving.metrics.ServingMetrics` fits)."""

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None: ...


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message, to be refused cleanly."""


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """The kind and caller-facing message of an exception escaping an RPC.

    Anything but a non-internal `ShipyardError` is logged with its traceback and answered
    with a generic message carrying a reference to that log line.
    """
    if isinstance(exc, ShipyardError) and exc.kind is not ErrorKind.INTERNAL:
        return exc.kind, exc.message
    ref = secrets.token_hex(6)
    log.error("internal error in a gRPC call (ref %s)", ref, exc_info=exc)
    return ErrorKind.INTERNAL, f"internal error (ref {ref})"


class StatusInterceptor(grpc.aio.ServerInterceptor):
    """Maps errors to status codes (see the module docstring) and times inference calls."""

    def __init__(self, metrics: RequestMetrics | None = None) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        deserializer = _tolerant(handler.request_deserializer)
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            timed = self._metrics is not None and handler_call_details.method == _INFER_METHOD
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, self._observe if timed else None),
                deserializer,
                serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _stream(handler.stream_stream), deserializer, serializer
            )
        return handler

    def _observe(self, request: Any, response: Any, status: str, started: float) -> None:
        assert self._metrics is not None
        if response is not None:
            model, version = response.model_name, response.model_version
        else:
            model, version = request.model_name, request.model_version
        seconds = time.perf_counter() - started
        try:
            self._metrics.observe_request(model, version, PROTOCOL, status, seconds)
        except Exception:  # a metrics failure must never change the caller's answer
            log.exception("could not record a gRPC request in the metrics")


_Observe = Callable[[Any, Any, str, float], None]


def _unary(behavior: Callable[..., Any], observe: _Observe | None) -> Callable[..., Any]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request is not a valid message")
        started = time.perf_counter()
        try:
            response = await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            kind, details = classify(exc)
            if observe is not None:
                observe(request, None, kind.value, started)
            await context.abort(STATUS[kind], details)
        if observe is not None:
            observe(request, response, OK, started)
        return response

    return wrapped


def _stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapped(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for response in behavior(_checked(requests), context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            kind, details = classify(exc)
            await context.abort(STATUS[kind], details)

    return wrapped


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidArgument("a stream message is not a valid message")
        yield request


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            return _Undecodable()

    return tolerant
