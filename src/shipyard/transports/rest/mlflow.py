"""MLflow scoring server handlers: `POST /invocations` for the default model."""

from __future__ import annotations

from shipyard.codecs.limits import Limits
from shipyard.codecs.mlflow import decode_invocations, encode_predictions
from shipyard.transports.rest.http import JSON, Request
from shipyard.transports.rest.kserve import PRIMARY_OUTPUT
from shipyard.transports.rest.plane import Plane
from shipyard.transports.rest.response import Response, answered_by, version_header


class MlflowHandlers:
    def __init__(self, plane: Plane, limits: Limits) -> None:
        self._plane = plane
        self._limits = limits

    async def invocations(self, request: Request) -> Response:
        request.model = self._plane.default_model
        body = await request.body(self._limits.max_body_bytes)
        decoded = decode_invocations(body, request.header(b"content-type"), self._limits)
        served, outputs = await self._plane.predict(
            request.model,
            None,
            decoded.data,
            header=request.lookup,
            request_id=request.request_id,
        )
        request.version = answered_by(request.model, served)
        values = outputs.get(PRIMARY_OUTPUT)
        if values is None:
            values = next(iter(outputs.values()))
        return 200, encode_predictions(values), JSON, version_header(request.version)
