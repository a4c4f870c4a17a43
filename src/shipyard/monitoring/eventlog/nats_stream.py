"""NATS JetStream sink: structured-mode CloudEvents on `shipyard.events.<model>`, kept by the
stream SHIPYARD_EVENTS (both configurable; created if missing, capped at `max_msgs`).

nats-py is asyncio-only while sinks run on the logger's worker thread, so the sink owns a
private event loop and runs each call to completion on it (all calls come from one thread
at a time). Messages carry `Nats-Msg-Id` = event id (the server drops a duplicate publish)
and a `Shipyard-Subject` header with the subject digest, which erasure reads without
fetching bodies.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from shipyard.core.errors import FailedPrecondition, Unavailable
from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog.cloudevent import from_cloudevent, to_cloudevent

DEFAULT_STREAM = "SHIPYARD_EVENTS"
SUBJECT_PREFIX = "shipyard.events."
SUBJECT_HEADER = "Shipyard-Subject"
_FETCH = 256
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
T = TypeVar("T")


def subject_of(model: str, prefix: str = SUBJECT_PREFIX) -> str:
    """NATS subject tokens cannot hold '.', '*', '>' or spaces: anything else becomes '_'."""
    return prefix + _UNSAFE.sub("_", model)


class NatsStreamSink:
    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = SUBJECT_PREFIX,
        max_msgs: int = 1_000_000,
        timeout_s: float = 5.0,
        name: str = "nats",
    ) -> None:
        self.name = name
        self.url = url
        self.stream = stream
        self.prefix = subject_prefix
        self.max_msgs = max_msgs
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(asyncio.wait_for(coro, self.timeout_s * 4))

    async def _connected(self) -> JetStreamContext:
        if self._nc is None or self._nc.is_closed or self._js is None:
            # Reconnecting is the worker's retry (with back-off), not the client's.
            self._nc = await nats.connect(
                self.url, connect_timeout=self.timeout_s, allow_reconnect=False
            )
            self._js = self._nc.jetstream(timeout=self.timeout_s)
            try:
                await self._js.stream_info(self.stream)
            except NotFoundError:
                await self._js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[self.prefix + ">"],
                        max_msgs=self.max_msgs,
                    )
                )
        return self._js

    async def _consumer(
        self, js: JetStreamContext, config: ConsumerConfig
    ) -> JetStreamContext.PullSubscription:
        """An ephemeral pull consumer over the whole stream, whatever prefix wrote it."""
        subjects = (await js.stream_info(self.stream)).config.subjects or []
        if len(subjects) != 1:
            raise FailedPrecondition(
                f"nats stream {self.stream} keeps {len(subjects)} subjects; the prediction "
                "log expects exactly one (e.g. shipyard.events.>)"
            )
        return await js.pull_subscribe(subjects[0], stream=self.stream, config=config)

    def write(self, events: Sequence[PredictionEvent]) -> None:
        self._run(self._write(events))

    async def _write(self, events: Sequence[PredictionEvent]) -> None:
        js = await self._connected()
        publishes = [
            js.publish(
                subject_of(e.model, self.prefix),
                to_cloudevent(e),
                stream=self.stream,
                headers={"Nats-Msg-Id": e.event_id, SUBJECT_HEADER: e.subject or ""},
            )
            for e in events
        ]
        await asyncio.gather(*publishes)

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            self._run(self._nc.close())
        self._loop.close()

    def prune(self, before: datetime) -> int:
        """Messages the server stored before `before`."""
        return self._maintain(self._prune(before))

    async def _prune(self, before: datetime) -> int:
        js = await self._connected()
        count_before = (await js.stream_info(self.stream)).state.messages
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=before.astimezone(UTC),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=self.timeout_s,
        )
        sub = await self._consumer(js, config)
        try:
            first_kept = await sub.fetch(1, timeout=min(1.0, self.timeout_s))
        except NatsTimeout:
            first_kept = []
        finally:
            await sub.unsubscribe()
        if first_kept:
            await js.purge_stream(self.stream, seq=first_kept[0].metadata.sequence.stream)
        else:
            await js.purge_stream(self.stream)
        return int(count_before - (await js.stream_info(self.stream)).state.messages)

    def erase(self, subjects: Collection[str]) -> int:
        return self._maintain(self._erase(subjects))

    def _maintain(self, coro: Coroutine[Any, Any, int]) -> int:
        try:
            return self._run(coro)
        except (NatsError, OSError, TimeoutError) as exc:
            raise Unavailable(f"nats stream {self.stream}: {type(exc).__name__} {exc}") from exc

    async def _erase(self, subjects: Collection[str]) -> int:
        js = await self._connected()
        removed = 0
        for seq in await self._sequences(js, subjects):
            if await js.delete_msg(self.stream, seq):
                removed += 1
        return removed

    async def _sequences(self, js: JetStreamContext, subjects: Collection[str]) -> list[int]:
        """Stream sequences of the messages of `subjects` (headers only, read once)."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            headers_only=True,
            inactive_threshold=self.timeout_s,
        )
        sub = await self._consumer(js, config)
        found: list[int] = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(_FETCH, timeout=min(1.0, self.timeout_s))
                except NatsTimeout:
                    return found
                for msg in msgs:
                    if (msg.headers or {}).get(SUBJECT_HEADER) in subjects:
                        found.append(msg.metadata.sequence.stream)
                if msgs[-1].metadata.num_pending == 0:
                    return found
        finally:
            await sub.unsubscribe()

    def read(self, count: int = 100) -> list[PredictionEvent]:
        """The oldest `count` events of the stream (tests and debugging)."""
        return self._run(self._read(count))

    async def _read(self, count: int) -> list[PredictionEvent]:
        js = await self._connected()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=self.timeout_s,
        )
        sub = await self._consumer(js, config)
        events: list[PredictionEvent] = []
        try:
            while len(events) < count:
                try:
                    msgs = await sub.fetch(min(_FETCH, count - len(events)), timeout=1.0)
                except NatsTimeout:
                    break
                events.extend(from_cloudevent(m.data) for m in msgs)
                if msgs[-1].metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return events
