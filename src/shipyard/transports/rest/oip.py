"""Open Inference Protocol v2 REST handlers: decode (codecs), call the plane, encode."""

from __future__ import annotations

import orjson

from shipyard.codecs import oip
from shipyard.codecs.limits import Limits
from shipyard.codecs.oip_binary import parse_header_length
from shipyard.core.errors import InvalidArgument, UnsupportedMedia
from shipyard.transports.rest.http import JSON, OCTET_STREAM, Request, require_json
from shipyard.transports.rest.plane import Plane
from shipyard.transports.rest.response import Response, version_header

_HEADER_LENGTH = b"inference-header-content-length"
_BINARY_MEDIA = frozenset({b"", JSON, OCTET_STREAM})
_EMPTY_JSON = frozenset({b"", b"{}"})


class OipHandlers:
    def __init__(self, plane: Plane, limits: Limits) -> None:
        self._plane = plane
        self._limits = limits

    async def server_metadata(self, request: Request) -> Response:
        meta = self._plane.server_metadata()
        body = oip.encode_server_metadata(meta.name, meta.version, meta.extensions)
        return 200, body, JSON, None

    async def model_metadata(self, request: Request) -> Response:
        meta = await self._plane.model_metadata(_name(request), request.version)
        body = oip.encode_model_metadata(
            meta.name, meta.versions, meta.platform, meta.inputs, meta.outputs
        )
        return 200, body, JSON, None

    async def model_ready(self, request: Request) -> Response:
        name = _name(request)
        ready = self._plane.model_ready(name, request.version)
        return (200 if ready else 503), oip.encode_model_ready(name, ready), JSON, None

    async def infer(self, request: Request) -> Response:
        header_length = parse_header_length(request.header(_HEADER_LENGTH))
        if header_length is None:
            require_json(request, allow_missing=True)  # tritonclient sends no Content-Type
        elif request.media_type() not in _BINARY_MEDIA:
            raise UnsupportedMedia("binary inference requests must be application/octet-stream")
        body = await request.body(self._limits.max_body_bytes)
        decoded = oip.decode_infer(
            body, _name(request), request.version, header_length=header_length, limits=self._limits
        )
        result = await self._plane.infer(decoded, request.lookup, request.request_id)
        request.version = result.model_version
        if decoded.id is None and result.id is not None:
            request.request_id = result.id  # a deployment's prediction id, for feedback
        payload, json_length = oip.encode_infer(result, binary=oip.binary_outputs(decoded))
        headers = version_header(result.model_version)
        if json_length is None:
            return 200, payload, JSON, headers
        headers.append((_HEADER_LENGTH, str(json_length).encode("ascii")))
        return 200, payload, OCTET_STREAM, headers

    async def repository_index(self, request: Request) -> Response:
        await _no_body(request, allow_missing=True)  # a read: tritonclient sends no type
        entries = self._plane.repository_index()
        body = orjson.dumps(
            [
                {"name": e.name, "version": e.version, "state": e.state.value, "reason": e.reason}
                for e in entries
            ]
        )
        return 200, body, JSON, None

    async def load(self, request: Request) -> Response:
        await _no_body(request, allow_missing=False)
        await self._plane.load(_name(request))
        return 200, b"{}", JSON, None

    async def unload(self, request: Request) -> Response:
        await _no_body(request, allow_missing=False)
        await self._plane.unload(_name(request))
        return 200, b"{}", JSON, None


async def _no_body(request: Request, *, allow_missing: bool) -> None:
    # State-changing endpoints take application/json only: no CSRF through simple requests.
    require_json(request, allow_missing=allow_missing)
    body = await request.body(4096)
    if body.strip() not in _EMPTY_JSON and not body.lstrip().startswith(b"{"):
        raise InvalidArgument("request body must be a JSON object (or empty)")


def _name(request: Request) -> str:
    assert request.model is not None  # the router sets it for every model endpoint
    return request.model
