"""Redis Streams sink: one XADD per event (pipelined per batch) of a structured-mode
CloudEvent, the stream capped with `MAXLEN ~ max_len` so it can never grow without bound.

Entry fields: `event` (the CloudEvent JSON) and `subject` (the digest, or empty) so erasure
can match without parsing. Entry ids carry the time the entry was added (ms), which retention
trims by (`XTRIM MINID`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis

from shipyard.core.errors import Unavailable
from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog.cloudevent import from_cloudevent, to_cloudevent

DEFAULT_STREAM = "shipyard:prediction-events"
_SCAN_COUNT = 1000


class RedisStreamSink:
    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        max_len: int = 1_000_000,
        timeout_s: float = 5.0,
        name: str = "redis",
    ) -> None:
        self.name = name
        self.stream = stream
        self.max_len = max_len
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def write(self, events: Sequence[PredictionEvent]) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for event in events:
                fields = {"event": to_cloudevent(event), "subject": event.subject or ""}
                pipe.xadd(self.stream, fields, maxlen=self.max_len, approximate=True)  # type: ignore[arg-type]
            pipe.execute()

    def close(self) -> None:
        self._client.close()

    def prune(self, before: datetime) -> int:
        """Entries added before `before` (entry ids carry the time they were added)."""
        minid = f"{int(before.timestamp() * 1000)}-0"
        with self._unavailable():
            return int(self._client.xtrim(self.stream, minid=minid, approximate=False))

    def erase(self, subjects: Collection[str]) -> int:
        removed = 0
        with self._unavailable():
            for entry_ids in self._scan(subjects):
                removed += int(self._client.xdel(self.stream, *entry_ids))
        return removed

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise Unavailable(f"redis stream {self.stream}: {exc}") from exc

    def read(self, count: int = 100) -> list[PredictionEvent]:
        """The oldest `count` events of the stream (tests and debugging)."""
        entries = _entries(self._client.xrange(self.stream, count=count))
        return [from_cloudevent(fields[b"event"]) for _id, fields in entries]

    def _scan(self, subjects: Collection[str]) -> list[list[bytes]]:
        """Ids of the entries of `subjects`, in pages (collected first: XDEL while paging
        would be fine for XRANGE, but this keeps the loop simple and bounded by max_len)."""
        pages: list[list[bytes]] = []
        start: bytes | str = "-"
        wanted = {subject.encode() for subject in subjects}
        while True:
            entries = _entries(self._client.xrange(self.stream, min=start, count=_SCAN_COUNT))
            if not entries:
                return pages
            page = [entry_id for entry_id, fields in entries if fields.get(b"subject") in wanted]
            if page:
                pages.append(page)
            if len(entries) < _SCAN_COUNT:
                return pages
            start = b"(" + entries[-1][0]


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE's reply, typed (the client is created without decode_responses)."""
    return [(entry_id, dict(fields)) for entry_id, fields in reply or ()]
