"""The response cache in Redis, shared by every worker and replica (needs the `redis` extra).

Redis is on the request path, so it must never slow serving down nor stop it (promise P11):
each call is bounded by `timeout_s` (20 ms by default), redis-py's own retries are off, and
any error or timeout is counted, logged at most once a minute and answered as a miss. After
an error the cache stays out of the way for `retry_after_s`, so an unreachable Redis costs
requests nothing, not a connection attempt each.

Values are a small binary framing of `np.lib.format` arrays (never pickle): numbers, booleans
and fixed-width strings as they are; object arrays of str or of bytes as their lengths and
their concatenated bytes. Outputs holding other Python objects are not stored.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import time
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shipyard.runtimes.base import Outputs
from shipyard.serving.cache import Clock

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 300
DEFAULT_TIMEOUT_S = 0.02
DEFAULT_PREFIX = "shipyard:cache:"
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
LOG_EVERY_S = 60.0

MAGIC = b"SYC1"
_PLAIN, _STR, _BYTES = 0, 1, 2


class Unstorable(Exception):
    """Outputs this format does not carry (object arrays of anything but str or bytes)."""


# -- the value format ------------------------------------------------------------------------


def dumps(outputs: Outputs) -> bytes:
    out = io.BytesIO()
    out.write(MAGIC + struct.pack("<I", len(outputs)))
    for name, array in outputs.items():
        kind, payload = _encode(array)
        encoded = name.encode("utf-8")
        out.write(struct.pack("<HBQ", len(encoded), kind, len(payload)))
        out.write(encoded)
        out.write(payload)
    return out.getvalue()


def _encode(array: np.ndarray) -> tuple[int, bytes]:
    out = io.BytesIO()
    if not array.dtype.hasobject:
        np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
        return _PLAIN, out.getvalue()
    values = array.reshape(-1).tolist()
    if all(isinstance(v, str) for v in values):
        kind, parts = _STR, [v.encode("utf-8", "surrogatepass") for v in values]
    elif all(isinstance(v, bytes) for v in values):
        kind, parts = _BYTES, values
    else:
        raise Unstorable("object array holding values other than str or bytes")
    lengths = np.fromiter(map(len, parts), dtype="<i8", count=len(parts)).reshape(array.shape)
    np.lib.format.write_array(out, lengths, allow_pickle=False)
    out.write(b"".join(parts))
    return kind, out.getvalue()


def loads(data: bytes) -> Outputs:
    """Inverse of `dumps`; arrays come back read-only. ValueError on anything malformed."""
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC:
        raise ValueError("not a shipyard cache value")
    (count,) = struct.unpack_from("<I", view, 4)
    at = 8
    outputs: Outputs = {}
    for _ in range(count):
        name_len, kind, size = struct.unpack_from("<HBQ", view, at)
        at += struct.calcsize("<HBQ")
        name = bytes(view[at : at + name_len]).decode("utf-8")
        at += name_len
        if at + size > len(view):
            raise ValueError("truncated cache value")
        array = _decode(kind, view[at : at + size])
        at += size
        array.flags.writeable = False
        outputs[name] = array
    return outputs


def _decode(kind: int, payload: memoryview) -> np.ndarray:
    stream = io.BytesIO(payload)
    head = np.lib.format.read_array(stream, allow_pickle=False)
    if kind == _PLAIN:
        return head
    if kind not in (_STR, _BYTES):
        raise ValueError(f"unknown array kind {kind}")
    blob = stream.read()
    ends = np.cumsum(head.reshape(-1))
    starts = ends - head.reshape(-1)
    if len(ends) and int(ends[-1]) != len(blob):
        raise ValueError("cache value string lengths do not add up")
    parts = [blob[int(s) : int(e)] for s, e in zip(starts, ends, strict=True)]
    values: list[Any] = (
        [p.decode("utf-8", "surrogatepass") for p in parts] if kind == _STR else parts
    )
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(head.shape)


# -- the cache -------------------------------------------------------------------------------


class RedisCache:
    """`ResponseCache` in Redis: `prefix + key.hex()` → `dumps(outputs)`, expiring after `ttl_s`."""

    def __init__(
        self,
        url: str,
        ttl_s: float = DEFAULT_TTL_S,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_after_s: float = 1.0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Clock = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.prefix = prefix.encode("utf-8")
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.max_value_bytes = max_value_bytes
        self._clock = clock
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._closed_until = float("-inf")
        self._logged_at = float("-inf")
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.skipped = 0  # outputs not stored: too large or not representable

    def __repr__(self) -> str:
        return f"<RedisCache hits={self.hits} misses={self.misses} errors={self.errors}>"

    def redis_key(self, key: bytes) -> bytes:
        return self.prefix + key.hex().encode("ascii")

    async def get(self, key: bytes) -> Outputs | None:
        if self._clock() < self._closed_until:
            self.misses += 1
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                data = await self._redis.get(self.redis_key(key))
            outputs = loads(data) if isinstance(data, bytes) else None
        except Exception as exc:
            self._failed(exc)
            outputs = None
        if outputs is None:
            self.misses += 1
        else:
            self.hits += 1
        return outputs

    async def put(self, key: bytes, outputs: Outputs) -> None:
        if self._clock() < self._closed_until:
            return
        try:
            data = dumps(outputs)
        except Unstorable:
            self.skipped += 1
            return
        if len(data) > self.max_value_bytes:
            self.skipped += 1
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._redis.set(self.redis_key(key), data, px=self.ttl_ms)
        except Exception as exc:
            self._failed(exc)

    async def close(self) -> None:
        await self._redis.aclose()

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        now = self._clock()
        self._closed_until = now + self.retry_after_s
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            logger.warning(
                "response cache in Redis unavailable (%s); answering as misses (%d errors so far)",
                what,
                self.errors,
            )
