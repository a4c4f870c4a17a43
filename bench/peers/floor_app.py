"""The thin floor: a bare ASGI app calling onnxruntime, nothing else.

Runs in the `floor` peer venv (uvicorn, onnxruntime, orjson, numpy), started by
bench/serving.py as `uvicorn floor_app:app --workers 2`. The model path comes from the
FLOOR_MODEL environment variable (an .onnx file with one FP32 input). Routes:

    GET  /ready                       -> 200 once the session is loaded
    POST /v2/models/{any}/infer       -> OIP-like JSON: first input's `data` and `shape`

No validation beyond what numpy and onnxruntime do: this is the lower bound of what a Python
HTTP server can do per request, not a product.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
_session = ort.InferenceSession(
    os.environ["FLOOR_MODEL"], _options, providers=["CPUExecutionProvider"]
)
_input = _session.get_inputs()[0].name
_outputs = [o.name for o in _session.get_outputs()]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send: Send, status: int, payload: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if scope["method"] == "GET" and path == "/ready":
        await _reply(send, 200, b"{}")
        return
    if scope["method"] != "POST" or not path.endswith("/infer"):
        await _reply(send, 404, b'{"error":"not found"}')
        return
    request = orjson.loads(await _body(receive))
    first = request["inputs"][0]
    batch = np.asarray(first["data"], dtype=np.float32).reshape(first["shape"])
    results = _session.run(_outputs, {_input: batch})
    outputs = [
        {
            "name": name,
            "shape": list(value.shape),
            "datatype": "INT64" if value.dtype == np.int64 else "FP32",
            "data": value.ravel().tolist(),
        }
        for name, value in zip(_outputs, results, strict=True)
    ]
    await _reply(send, 200, orjson.dumps({"model_name": "floor", "outputs": outputs}))
