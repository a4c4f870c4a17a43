"""Content-Encoding for request and response bodies: gzip, deflate, identity.

Decompression streams with a hard output cap (zlib's `max_length`), so a small body that
inflates to gigabytes stops at the limit: it never allocates more than `limit + 1` bytes.
"""

from __future__ import annotations

import zlib
from typing import Any

from shipyard.core.errors import InvalidArgument, PayloadTooLarge, UnsupportedMedia

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS
_IDENTITY = frozenset({"", "identity"})
_GZIP = frozenset({"gzip", "x-gzip"})
SUPPORTED = ("gzip", "deflate", "identity")
_STEP = 1024 * 1024


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The decoded body; PayloadTooLarge as soon as it would exceed `limit` bytes."""
    name = _normalise(encoding)
    if name in _IDENTITY:
        _check(len(body), limit)
        return body
    if name in _GZIP:
        return _inflate(body, _GZIP_WBITS, "gzip", limit)
    if name == "deflate":
        # HTTP "deflate" means zlib-wrapped, but some clients send raw deflate: accept both.
        return _inflate(body, _ZLIB_WBITS if _zlib_header(body) else _RAW_WBITS, "deflate", limit)
    raise UnsupportedMedia(
        f"unsupported Content-Encoding {encoding!r}; use one of {', '.join(SUPPORTED)}"
    )


def compress(body: bytes, encoding: str | None, level: int = 5) -> bytes:
    """Encode a response body; `encoding` is one that `accepted_encoding` chose."""
    name = _normalise(encoding)
    if name in _IDENTITY:
        return body
    if name in _GZIP:
        packer = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        return packer.compress(body) + packer.flush()
    if name == "deflate":
        return zlib.compress(body, level)
    raise UnsupportedMedia(f"unsupported encoding {encoding!r}")


def accepted_encoding(accept_encoding: str | None) -> str | None:
    """The response encoding for an Accept-Encoding header: gzip, deflate or None (identity)."""
    if not accept_encoding:
        return None
    offered: dict[str, float] = {}
    for item in accept_encoding.lower().split(",")[:32]:  # bounded: headers are caller input
        token, _, params = item.partition(";")
        offered[token.strip()] = _quality(params)
    for name in ("gzip", "deflate"):
        if offered.get(name, offered.get("*", 0.0)) > 0.0:
            return name
    return None


def _inflate(body: bytes, wbits: int, name: str, limit: int) -> bytes:
    out: list[bytes] = []
    data = body
    # A gzip body may hold several members back to back; each one is bounded by what is left.
    while data:
        inflater = zlib.decompressobj(wbits)
        _inflate_member(inflater, data, name, limit, out)
        data = inflater.unused_data if wbits == _GZIP_WBITS else b""
    return out[0] if len(out) == 1 else b"".join(out)


def _inflate_member(inflater: Any, data: bytes, name: str, limit: int, out: list[bytes]) -> None:
    # Steps of at most _STEP bytes: zlib would otherwise build the whole output in blocks and
    # copy it into one bytes object, doubling the peak memory of a bomb.
    produced = sum(map(len, out))
    while True:
        try:
            chunk = inflater.decompress(data, _STEP)
        except zlib.error as exc:
            raise InvalidArgument(f"body is not valid {name} data: {exc}") from None
        produced += len(chunk)
        _check(produced, limit)
        out.append(chunk)
        data = inflater.unconsumed_tail
        if inflater.eof or (not data and len(chunk) < _STEP):
            break
    if not inflater.eof:
        raise InvalidArgument(f"{name} body is truncated")


def _check(size: int, limit: int) -> None:
    if size > limit:
        shown = f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
        raise PayloadTooLarge(f"decompressed body exceeds {shown}")


def _zlib_header(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _normalise(encoding: str | None) -> str:
    return (encoding or "").strip().lower()


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip() == "q":
            try:
                return float(value.strip()[:8])
            except ValueError:
                return 0.0
    return 1.0
