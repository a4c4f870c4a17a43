"""ASGI plumbing shared by every handler: the request, bounded body reading, responses.

Deliberately tiny (no framework): one `Request` object per call with slots, headers as a
dict built once by C code, the body read at most once and never past the limit.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from shipyard.codecs.compression import accepted_encoding, compress, decompress
from shipyard.core.errors import InvalidArgument, PayloadTooLarge, UnsupportedMedia

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"
TEXT_PLAIN = b"text/plain; version=0.0.4; charset=utf-8"
COMPRESS_MIN_BYTES = 1024  # below this gzip costs more than it saves
_MAX_ID = 128
_MAX_LENGTH_DIGITS = 19
_ID_PREFIX = os.urandom(6).hex()  # unique per process; the counter makes ids unique inside it
_ids = itertools.count(1)
# Generated ids also name logged predictions: a forked worker must not repeat its parent's.
os.register_at_fork(after_in_child=lambda: globals().update(_ID_PREFIX=os.urandom(6).hex()))


class ClientDisconnected(Exception):
    """The client went away while we were reading its body: nothing to answer."""


def new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_ids)}"


def _caller_id(raw: bytes | None) -> str | None:
    # Echoed into headers and logs: only short printable ASCII without spaces is honoured.
    if raw and len(raw) <= _MAX_ID and raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable() and " " not in text and '"' not in text:
            return text
    return None


class Request:
    __slots__ = ("headers", "method", "model", "path", "receive", "request_id", "version")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.receive = receive
        self.request_id = _caller_id(self.headers.get(b"x-request-id")) or new_request_id()
        self.model: str | None = None
        self.version: str | None = None

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def lookup(self, name: str) -> str | None:
        """`header` by a lowercase str name: what deployment routing looks headers up with."""
        return self.header(name.encode("latin-1"))

    def media_type(self) -> bytes:
        value = self.headers.get(b"content-type")
        return b"" if value is None else value.partition(b";")[0].strip().lower()

    async def body(self, limit: int) -> bytes:
        """The request body, decompressed, refused with 413 as soon as it passes `limit`."""
        raw = await self._read(limit)
        encoding = self.headers.get(b"content-encoding")
        if encoding is None:
            return raw
        return decompress(raw, encoding.decode("latin-1"), limit)

    async def _read(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or len(declared) > _MAX_LENGTH_DIGITS:
                raise InvalidArgument("Content-Length must be a non-negative integer")
            if int(declared) > limit:
                raise PayloadTooLarge(
                    f"request body is {int(declared)} bytes; the limit is {limit}"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            more = message.get("more_body", False)
            if not more and not chunks:
                return chunk  # the common case: one message, no join
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)


def require_json(request: Request, *, allow_missing: bool) -> None:
    """415 unless the body is declared JSON (or undeclared, where clients send none)."""
    media = request.media_type()
    if media == JSON or (allow_missing and not media):
        return
    shown = (request.header(b"content-type") or "none")[:60]
    raise UnsupportedMedia(f"unsupported Content-Type {shown!r}; use application/json")


async def respond(
    send: Send,
    request: Request,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: Headers | None = None,
) -> None:
    headers: Headers = [
        (b"content-type", content_type),
        (b"x-request-id", request.request_id.encode("ascii")),
    ]
    if extra:
        headers.extend(extra)
    if len(body) >= COMPRESS_MIN_BYTES:
        encoding = accepted_encoding(request.header(b"accept-encoding"))
        if encoding is not None:
            body = compress(body, encoding)
            headers.append((b"content-encoding", encoding.encode("ascii")))
            headers.append((b"vary", b"Accept-Encoding"))
    headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
