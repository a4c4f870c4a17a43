"""KServe v1 REST handlers: `GET /v1/models/{m}` and `POST /v1/models/{m}:predict`."""

from __future__ import annotations

import orjson
import pandas as pd

from shipyard.codecs.kserve_v1 import decode_predict, encode_predict
from shipyard.codecs.limits import Limits
from shipyard.transports.rest.http import JSON, Request, require_json
from shipyard.transports.rest.plane import Plane
from shipyard.transports.rest.response import Response, answered_by, version_header

PRIMARY_OUTPUT = "predict"


class KserveHandlers:
    def __init__(self, plane: Plane, limits: Limits) -> None:
        self._plane = plane
        self._limits = limits

    async def model(self, request: Request) -> Response:
        name = request.model or ""
        ready = self._plane.model_ready(name)
        body = orjson.dumps({"name": name, "ready": ready})
        return (200 if ready else 503), body, JSON, None

    async def predict(self, request: Request) -> Response:
        require_json(request, allow_missing=True)
        decoded = decode_predict(await request.body(self._limits.max_body_bytes), self._limits)
        # Rows of objects are a table with named columns.
        data = pd.DataFrame.from_records(decoded) if isinstance(decoded, list) else decoded
        served, outputs = await self._plane.predict(
            request.model, None, data, header=request.lookup, request_id=request.request_id
        )
        request.version = answered_by(request.model, served)
        values = outputs.get(PRIMARY_OUTPUT)
        if values is None:
            values = next(iter(outputs.values()))
        return 200, encode_predict(values), JSON, version_header(request.version)
