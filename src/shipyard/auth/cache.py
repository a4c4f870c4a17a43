"""A small in-process cache of successful key lookups, so the data plane can check a key on
every request without a database round trip.

Entries are fresh for `ttl_s` (revocation elsewhere takes effect within that time) and can be
used `stale_s` longer only while the database is unavailable, so serving outlives a database
outage (P11). Bounded: the least recently used entry goes first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(self, *, ttl_s: float, stale_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[datetime, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: datetime, *, stale_ok: bool = False) -> V | None:
        limit = self.ttl_s + (self.stale_s if stale_ok else 0.0)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            age = (now - entry[0]).total_seconds()
            # A clock that went backwards counts as expired, not as forever fresh.
            if not 0 <= age < limit:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: V, now: datetime) -> None:
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def remove_values(self, predicate: Callable[[V], bool]) -> None:
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if predicate(v)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
