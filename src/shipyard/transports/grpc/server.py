"""The Open Inference Protocol gRPC service (`inference.GRPCInferenceService`) on the data plane.

Each RPC decodes (`codec`), calls the shared data plane, and encodes; errors are mapped to
status codes once, by `errors.StatusInterceptor`. `create_grpc_server` builds a `grpc.aio`
server bound with SO_REUSEPORT, so several worker processes can share one port:

    server = create_grpc_server(plane, host="127.0.0.1", port=8081)
    await server.start()
    ...
    await server.stop(grace=25)  # refuses new calls, lets in-flight ones finish
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import grpc.aio

from shipyard.codecs.limits import DEFAULT_LIMITS, MIB, Limits
from shipyard.core.errors import Unavailable
from shipyard.core.tensors import InferRequest, InferResult
from shipyard.serving.routing import Lookup
from shipyard.serving.types import ModelMetadata, ServerMetadata

from . import codec
from ._generated import open_inference_grpc_pb2 as pb
from ._generated import open_inference_grpc_pb2_grpc as pb_grpc
from .auth import AuthInterceptor
from .errors import OK, RequestMetrics, StatusInterceptor, classify

if TYPE_CHECKING:
    from shipyard.transports.rest.auth import Guard

Context = grpc.aio.ServicerContext[Any, Any]


class InferencePlane(Protocol):
    """The part of `shipyard.serving.dataplane.DataPlane` this transport calls."""

    def live(self) -> bool: ...
    def ready(self) -> bool: ...
    def model_ready(self, name: str, version: str | None = None) -> bool: ...
    def server_metadata(self) -> ServerMetadata: ...
    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata: ...
    async def infer(self, request: InferRequest, header: Lookup | None = None) -> InferResult: ...


class InferenceServicer:
    """`GRPCInferenceService`: decode, call the data plane, encode. Nothing else."""

    def __init__(self, plane: InferencePlane, limits: Limits = DEFAULT_LIMITS) -> None:
        self._plane = plane
        self._limits = limits

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._plane.live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._plane.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        ready = self._plane.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return codec.encode_server_metadata(self._plane.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        metadata = await self._plane.model_metadata(request.name, request.version or None)
        return codec.encode_model_metadata(metadata)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        decoded = codec.decode_infer(request, self._limits)
        result = await self._plane.infer(decoded, _metadata_lookup(context))
        # The version that answered (`model:version` for a deployment), as REST's header.
        context.set_trailing_metadata(((VERSION_METADATA, result.model_version),))
        return codec.encode_infer(result, raw=codec.is_raw(request))

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # A failed call is reported in its own response; the stream goes on.
        async for request in requests:
            try:
                response = await self.ModelInfer(request, context)
            except Exception as exc:
                yield pb.ModelStreamInferResponse(error_message=classify(exc)[1])
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)


UNKNOWN_MODEL = "-"
VERSION_METADATA = "x-shipyard-model-version"


def _metadata_lookup(context: Context) -> Lookup:
    """Looks call metadata up lazily: only deployment routing asks, and only sometimes."""

    def lookup(name: str) -> str | None:
        for key, value in context.invocation_metadata() or ():
            if key == name:
                return value if isinstance(value, str) else None
        return None

    return lookup


class KnownModelLabels:
    """Passes observations on, naming a failed call's model only if the data plane knows it.

    A failed request's model name and version come from the caller; made-up names must not
    become new metric label values (unbounded cardinality), so unknown ones are reported as
    model "-" and version "" (the REST transport's convention).
    """

    def __init__(self, metrics: RequestMetrics, plane: InferencePlane) -> None:
        self._metrics = metrics
        self._plane = plane

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None:
        if status != OK and not self._known(model, version):
            model, version = UNKNOWN_MODEL, ""
        self._metrics.observe_request(model, version, protocol, status, seconds)

    def _known(self, model: str, version: str) -> bool:
        try:
            self._plane.model_ready(model, version or None)
        except Exception:  # NotFound, or a name the plane refuses outright
            return False
        return True


_add_servicer: Callable[[InferenceServicer, grpc.aio.Server], None] = (
    pb_grpc.add_GRPCInferenceServiceServicer_to_server
)


def create_grpc_server(
    dataplane: InferencePlane,
    *,
    host: str,
    port: int,
    metrics: RequestMetrics | None = None,
    max_message_bytes: int = 64 * MIB,
    limits: Limits = DEFAULT_LIMITS,
    guard: Guard | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> grpc.aio.Server:
    """An unstarted `grpc.aio` server for `dataplane`, bound to host:port with SO_REUSEPORT.

    Messages larger than `max_message_bytes` are refused by grpc with RESOURCE_EXHAUSTED.
    Call `await server.start()`, and `await server.stop(grace)` to drain. Must be called
    with the event loop the server will run on. With `guard`, calls need an API key
    (auth.py); with `tls` (PEM private key, PEM certificate chain) the port speaks TLS only.
    """
    labelled = KnownModelLabels(metrics, dataplane) if metrics is not None else None
    interceptors: list[grpc.aio.ServerInterceptor] = [StatusInterceptor(labelled)]
    if guard is not None:
        interceptors.append(AuthInterceptor(guard))  # inside: its errors use the one table
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    _add_servicer(InferenceServicer(dataplane, limits), server)
    where = address(host, port)
    try:
        if tls is None:
            server.add_insecure_port(where)
        else:
            server.add_secure_port(where, grpc.ssl_server_credentials([tls]))
    except RuntimeError:
        raise Unavailable(f"cannot listen for gRPC on {where}") from None
    return server


def address(host: str, port: int) -> str:
    """host:port for grpc, with IPv6 literals bracketed."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
