"""Redis Streams: XREADGROUP in a consumer group, XACK after publishing, XAUTOCLAIM for the
pending entries of consumers that died.

An entry carries its record as JSON in the field `data`; results and dead letters are
appended to their streams the same way (`data` plus `id`). The group is created at the
start of the input stream if it does not exist, so records written before the first
consumer started are scored too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from shipyard.core.errors import FailedPrecondition, Unauthenticated
from shipyard.jobs.stream.broker import Endpoints, Message, Outgoing, unavailable

FIELD = b"data"
ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
)


class RedisStreams:
    name = "redis"

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._client: aioredis.Redis | None = None
        self._claim_idle_ms = max(1, int(endpoints.claim_idle_s * 1000))
        self._next_claim = 0.0

    @property
    def client(self) -> aioredis.Redis:
        assert self._client is not None, "connect() first"
        return self._client

    async def connect(self) -> None:
        e = self.endpoints
        self._client = aioredis.Redis.from_url(
            e.url,
            socket_timeout=30,
            socket_connect_timeout=5,
            health_check_interval=15,
            client_name=client_name(e),  # CLIENT LIST shows who is consuming
        )
        with unavailable("redis", ERRORS):
            try:
                await self.client.xgroup_create(e.input, e.group, id="0", mkstream=True)
            except redis_errors.AuthenticationError as exc:
                raise Unauthenticated(f"redis: the server refused the login: {exc}") from None
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" in str(exc):  # another consumer made it first
                    return
                raise FailedPrecondition(f"redis: cannot read stream {e.input!r}: {exc}") from None

    async def fetch(self, max_messages: int, max_wait_s: float) -> list[Message]:
        with unavailable("redis", ERRORS):
            if time.monotonic() >= self._next_claim:
                claimed = await self._claim(max_messages)
                if claimed:
                    return claimed
                self._next_claim = time.monotonic() + self.endpoints.claim_idle_s / 2
            e = self.endpoints
            block = max(1, int(max_wait_s * 1000))  # 0 would block forever
            reply: Any = await self.client.xreadgroup(
                e.group, e.consumer, {e.input: ">"}, count=max_messages, block=block
            )
        if not reply:
            return []
        _, entries = reply[0]
        return [_message(entry_id, fields, 1) for entry_id, fields in entries]

    async def _claim(self, count: int) -> list[Message]:
        """Entries other consumers (or an earlier life of this one) took and never acked."""
        e = self.endpoints
        reply: Any = await self.client.xautoclaim(
            e.input, e.group, e.consumer, self._claim_idle_ms, "0-0", count=count
        )
        entries = [(i, f) for i, f in reply[1] if f is not None]
        if not entries:
            return []
        first, last = entries[0][0], entries[-1][0]
        pending: Any = await self.client.xpending_range(
            e.input, e.group, first, last, len(entries), e.consumer
        )
        tries = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        return [_message(i, f, tries.get(i, 2)) for i, f in entries]

    async def publish(self, results: Sequence[Outgoing], dead: Sequence[Outgoing]) -> None:
        if not results and not dead:
            return
        e = self.endpoints
        with unavailable("redis", ERRORS):
            async with self.client.pipeline(transaction=True) as pipe:
                for item in results:
                    pipe.xadd(e.output, {FIELD: item.body, b"id": item.key})
                for item in dead:
                    pipe.xadd(e.dlq, {FIELD: item.body, b"id": item.key})
                await pipe.execute()

    async def ack(self, messages: Sequence[Message]) -> None:
        if messages:
            with unavailable("redis", ERRORS):
                await self.client.xack(
                    self.endpoints.input, self.endpoints.group, *[m.id for m in messages]
                )

    async def release(self, messages: Sequence[Message]) -> None:
        """Nothing to do: unacknowledged entries stay pending and XAUTOCLAIM retries them."""

    async def lag(self) -> int | None:
        with unavailable("redis", ERRORS):
            groups: Any = await self.client.xinfo_groups(self.endpoints.input)
        for group in groups:
            if _text(group.get("name")) == self.endpoints.group:
                lag = group.get("lag")
                return None if lag is None else int(lag)
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def client_name(endpoints: Endpoints) -> str:
    return f"shipyard-stream:{endpoints.group}:{endpoints.consumer}"


def _message(entry_id: bytes | str, fields: dict[bytes, bytes], deliveries: int) -> Message:
    text = _text(entry_id)
    return Message(text, fields.get(FIELD, b""), deliveries, text)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
