"""API keys on the gRPC service: `authorization: Bearer <token>` metadata (or
`x-api-key: <token>`, as over REST), with REST's scopes.

`AuthInterceptor` runs inside `errors.StatusInterceptor` (list it after it): a refused call
gets a handler that raises Unauthenticated / PermissionDenied without decoding the request,
and the status interceptor maps that through the one error table (UNAUTHENTICATED,
PERMISSION_DENIED). The check itself is the REST transport's `Guard` (cache hits in memory,
misses in a thread), so both transports share one scope table:

    ServerLive, ServerReady                                open
    ModelInfer, ModelStreamInfer                           predict
    ServerMetadata, ModelMetadata, ModelReady              predict or read
    anything else                                          any valid key
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from shipyard.auth import tokens
from shipyard.core.errors import ShipyardError
from shipyard.transports.rest.auth import ANY_KEY, METADATA, OPEN, PREDICT, Guard, Needs

_SERVICE = "/inference.GRPCInferenceService/"
METHOD_SCOPES: Mapping[str, Needs] = {
    _SERVICE + "ServerLive": OPEN,
    _SERVICE + "ServerReady": OPEN,
    _SERVICE + "ModelInfer": PREDICT,
    _SERVICE + "ModelStreamInfer": PREDICT,
    _SERVICE + "ServerMetadata": METADATA,
    _SERVICE + "ModelMetadata": METADATA,
    _SERVICE + "ModelReady": METADATA,
}


def metadata_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The bearer token of the call's `authorization` metadata, else its `x-api-key`, or None.
    (gRPC metadata keys are always lower case.)"""
    found = {name: value for name, value in metadata or () if isinstance(value, str)}
    token = tokens.bearer_token(found.get("authorization"))
    if token is None:
        token = found.get("x-api-key", "").strip() or None
    return token


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without a key holding the method's scope (see the module docstring)."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        needs = METHOD_SCOPES.get(handler_call_details.method, ANY_KEY)
        if needs:
            token = metadata_token(handler_call_details.invocation_metadata)
            try:
                await self._guard.check(token, needs)
            except ShipyardError as exc:
                handler = await continuation(handler_call_details)
                return None if handler is None else _refusing(handler, exc)
        return await continuation(handler_call_details)


def _refusing(handler: Any, error: ShipyardError) -> Any:
    """A handler of the same shape as `handler` that raises `error` for every call, without
    decoding the request: every call's request is the empty message (metrics label "-")."""
    serializer = handler.response_serializer
    empty = handler.request_deserializer(b"") if handler.request_deserializer else None

    def ignore(data: bytes) -> Any:
        return empty

    if handler.unary_unary is not None:

        async def unary(request: Any, context: Any) -> Any:
            raise error

        return grpc.unary_unary_rpc_method_handler(unary, ignore, serializer)
    if handler.stream_stream is not None:

        async def stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            raise error
            yield  # pragma: no cover - makes this an async generator

        return grpc.stream_stream_rpc_method_handler(stream, ignore, serializer)
    return None
