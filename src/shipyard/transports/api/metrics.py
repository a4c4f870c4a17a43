"""GET /metrics (read scope): the control plane's Prometheus exposition.

What the monitoring loop judged (drift p-values, scores and decisions per feature; firing
alerts) and the process's own CPU and memory. The data plane keeps its own `/metrics` (request
counts and latencies per worker); this one is the control plane's. Prometheus sends the key
with `authorization: {credentials: sy_...}` in its scrape config.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shipyard.transports.api.context import Caller
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.security import READ

METRICS_STATE = "shipyard_metrics"  # app.state attribute holding the CollectorRegistry

router = APIRouter(responses=ERROR_RESPONSES, tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request, caller: Caller = READ) -> Response:
    registry: CollectorRegistry = getattr(request.app.state, METRICS_STATE)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
