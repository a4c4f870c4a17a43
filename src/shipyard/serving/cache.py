"""An optional response cache for the data plane, keyed by model version and input bytes.

`DataPlane` asks the cache after the request is validated and prepared (so invalid input
never reaches it) and before the batcher; only successful outputs are stored, always in full
(requested-output filtering happens after the cache). The key covers the model name, the
version number and the prepared input's canonical bytes, so a hot swap to another version
never answers with the previous version's outputs.

The interface is async because the Redis backend (`cache_redis.RedisCache`) does network I/O
on the request path. `LruCache` is in-process: its coroutines never suspend, so awaiting one
costs a coroutine frame (well under a microsecond), not an event-loop turn. That is cheaper
than a sync interface with an async adapter, which would need a type check or a second code
path in the data plane.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from shipyard.runtimes.base import Outputs

KEY_BYTES = 16
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

Clock = Callable[[], float]


@runtime_checkable
class ResponseCache(Protocol):
    """Full model outputs by `cache_key`. A failing backend answers None (a miss), never raises."""

    hits: int
    misses: int

    async def get(self, key: bytes) -> Outputs | None: ...

    async def put(self, key: bytes, outputs: Outputs) -> None: ...

    async def close(self) -> None:
        """Release connections (the server's shutdown calls it once)."""


# -- keys ------------------------------------------------------------------------------------


def cache_key(name: str, version: int, prepared: object) -> bytes | None:
    """A 16-byte blake2b digest of (name, version, canonical bytes of `prepared`).

    Same values with another dtype, shape, column name or column order give another key.
    None for an input of a type the cache does not know (such a request is not cached).
    """
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    _field(h, name.encode("utf-8"))
    h.update(struct.pack("<q", version))
    if isinstance(prepared, np.ndarray):
        h.update(b"A")
        _array(h, prepared)
    elif isinstance(prepared, pd.DataFrame):
        h.update(b"F")
        _frame(h, prepared)
    elif isinstance(prepared, dict) and all(isinstance(v, np.ndarray) for v in prepared.values()):
        h.update(b"D" + struct.pack("<q", len(prepared)))
        for k in sorted(prepared, key=str):
            _field(h, str(k).encode("utf-8"))
            _array(h, prepared[k])
    else:
        return None
    return h.digest()


def _field(h: Any, data: bytes) -> None:
    h.update(struct.pack("<q", len(data)))
    h.update(data)


def _array(h: Any, array: np.ndarray) -> None:
    _field(h, array.dtype.str.encode("ascii"))
    h.update(struct.pack(f"<{array.ndim + 1}q", array.ndim, *array.shape))
    if array.dtype.hasobject:
        _objects(h, array.reshape(-1))
    else:
        h.update(_raw(array))


def _raw(array: np.ndarray) -> memoryview:
    """C-order bytes of a non-object array (as uint8: datetimes do not export buffers)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _frame(h: Any, frame: pd.DataFrame) -> None:
    h.update(struct.pack("<qq", *frame.shape))
    for column, dtype in frame.dtypes.items():
        _field(h, str(column).encode("utf-8"))
        _field(h, str(dtype).encode("utf-8"))
    for _, series in frame.items():
        if isinstance(series.dtype, np.dtype) and not series.dtype.hasobject:
            h.update(_raw(series.to_numpy()))
        else:  # object, category, string and nullable columns: their values one by one
            _objects(h, series.to_numpy(dtype=object))


def _objects(h: Any, values: Iterable[object]) -> None:
    """Each value as a tagged, length-prefixed UTF-8 representation."""
    parts = [_object_bytes(v) for v in values]
    h.update(np.fromiter(map(len, parts), dtype="<i8", count=len(parts)).tobytes())
    h.update(b"".join(parts))


def _object_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return b"b" + value
    return f"r{type(value).__qualname__}:{value!r}".encode("utf-8", "backslashreplace")


# -- the in-process LRU ----------------------------------------------------------------------


def frozen_copy(outputs: Outputs) -> Outputs:
    """Read-only copies of `outputs`: nothing stored aliases memory a caller may change."""
    copies: Outputs = {}
    for name, array in outputs.items():
        copy = np.array(array, copy=True)
        copy.flags.writeable = False
        copies[name] = copy
    return copies


def outputs_size(outputs: Outputs) -> int:
    """Bytes held by `outputs` (object arrays: their pointers and each element's size)."""
    size = 0
    for array in outputs.values():
        size += array.nbytes
        if array.dtype.hasobject:
            size += sum(sys.getsizeof(v) for v in array.reshape(-1))
    return size


class LruCache:
    """In-process LRU bounded by entries and by bytes of output arrays, with an optional TTL.

    For use from the event loop (one thread): no locks. Entries are read-only copies; `get`
    returns a new dict of those read-only arrays.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl_s: float | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be positive (or None for no expiry)")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        # key -> (outputs, size, expires at or +inf)
        self._entries: OrderedDict[bytes, tuple[Outputs, int, float]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"<LruCache {len(self)}/{self.max_entries} entries, {self.bytes}/{self.max_bytes} "
            f"bytes, hits={self.hits} misses={self.misses}>"
        )

    async def get(self, key: bytes) -> Outputs | None:
        return self.get_now(key)

    async def put(self, key: bytes, outputs: Outputs) -> None:
        self.put_now(key, outputs)

    def get_now(self, key: bytes) -> Outputs | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        outputs, _, expires = entry
        if self.ttl_s is not None and expires <= self._clock():
            self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return dict(outputs)

    def put_now(self, key: bytes, outputs: Outputs) -> None:
        stored = frozen_copy(outputs)
        size = outputs_size(stored)
        if key in self._entries:
            self._drop(key)
        if size > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        expires = self._clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        self._entries[key] = (stored, size, expires)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    async def close(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: bytes) -> None:
        _, size, _ = self._entries.pop(key)
        self.bytes -= size


def cache_from_spec(
    spec: str,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ttl_s: float | None = None,
) -> ResponseCache:
    """`lru` → an in-process LruCache; `redis://…` / `rediss://…` / `unix://…` → a RedisCache
    (needs the `redis` extra; its TTL defaults to 300 s)."""
    if spec == "lru":
        return LruCache(max_entries, max_bytes, ttl_s)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from shipyard.serving.cache_redis import DEFAULT_TTL_S, RedisCache

        return RedisCache(spec, ttl_s=ttl_s if ttl_s is not None else DEFAULT_TTL_S)
    raise ValueError(f"unknown cache {spec!r}: give 'lru' or a redis:// URL")
