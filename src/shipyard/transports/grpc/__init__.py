"""Open Inference Protocol gRPC transport (`inference.GRPCInferenceService`)."""

from .errors import STATUS, RequestMetrics, StatusInterceptor
from .server import InferencePlane, InferenceServicer, create_grpc_server

__all__ = [
    "STATUS",
    "InferencePlane",
    "InferenceServicer",
    "RequestMetrics",
    "StatusInterceptor",
    "create_grpc_server",
]
