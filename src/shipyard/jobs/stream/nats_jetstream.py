"""NATS JetStream: a durable pull consumer shared by every process of the group.

The input subject, the output subject and the dead-letter subject must each be captured by
a JetStream stream (`nats stream add`): publishing to a subject no stream keeps would lose
the result, so the consumer refuses to start instead. Results carry `Nats-Msg-Id` derived
from the input message, so a result published again after a crash falls inside the
stream's duplicate window and is dropped by the server: exactly once in effect.
Unacknowledged messages are redelivered after the ack wait (`claim_idle_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from shipyard.core.errors import FailedPrecondition
from shipyard.jobs.stream.broker import Endpoints, Message, Outgoing, unavailable

ERRORS: tuple[type[BaseException], ...] = (NatsError, OSError, TimeoutError)
MIN_FETCH_S = 0.01  # nats-py turns the timeout into the request's expiry, minus 100 µs
RETRY_DELAY_S = 1.0
INITIAL_ATTEMPTS = 2

log = logging.getLogger("shipyard.stream")


class NatsJetStream:
    name = "nats"

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stream = ""

    async def connect(self) -> None:
        e = self.endpoints
        with unavailable("nats", ERRORS):
            # A few tries to connect at all (nats-py's -1 would retry an unreachable server
            # forever); once connected, reconnect for as long as it takes.
            self._nc = await nats.connect(
                e.url,
                connect_timeout=5,
                max_reconnect_attempts=INITIAL_ATTEMPTS,
                reconnect_time_wait=1,
                error_cb=_log_error,
            )
            self._nc.options["max_reconnect_attempts"] = -1
            js = self._js = self._nc.jetstream()
            self._stream = await self._stream_of(js, "--input", e.input)
            for what, subject in (("--output", e.output), ("--dlq", e.dlq)):
                await self._stream_of(js, what, subject)
            config = ConsumerConfig(
                durable_name=e.group,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=e.claim_idle_s,
                filter_subject=e.input,
            )
            self._sub = await js.pull_subscribe(
                e.input, durable=e.group, stream=self._stream, config=config
            )

    @staticmethod
    async def _stream_of(js: JetStreamContext, what: str, subject: str) -> str:
        try:
            return await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            raise FailedPrecondition(
                f"nats: no JetStream stream keeps subject {subject!r} ({what}); create one "
                f"first, e.g. `nats stream add --subjects {subject!r}`"
            ) from None

    async def fetch(self, max_messages: int, max_wait_s: float) -> list[Message]:
        assert self._sub is not None, "connect() first"
        with unavailable("nats", ERRORS):
            try:
                msgs = await self._sub.fetch(max_messages, timeout=max(MIN_FETCH_S, max_wait_s))
            except (TimeoutError, NatsTimeout):  # nothing arrived in time
                return []
        return [self._message(msg) for msg in msgs]

    def _message(self, msg: Msg) -> Message:
        meta = msg.metadata
        return Message(f"{self._stream}:{meta.sequence.stream}", msg.data, meta.num_delivered, msg)

    async def publish(self, results: Sequence[Outgoing], dead: Sequence[Outgoing]) -> None:
        assert self._js is not None, "connect() first"
        js, e = self._js, self.endpoints
        sends = [(e.output, item) for item in results] + [(e.dlq, item) for item in dead]
        with unavailable("nats", ERRORS):
            # Concurrently: each publish waits for its own PubAck (the message is stored).
            await asyncio.gather(
                *(
                    js.publish(subject, item.body, timeout=10, headers=_headers(item))
                    for subject, item in sends
                )
            )

    async def ack(self, messages: Sequence[Message]) -> None:
        with unavailable("nats", ERRORS):
            for message in messages:
                await _msg(message).ack()

    async def release(self, messages: Sequence[Message]) -> None:
        with unavailable("nats", ERRORS):
            for message in messages:
                await _msg(message).nak(delay=RETRY_DELAY_S)

    async def lag(self) -> int | None:
        if self._sub is None:
            return None
        with unavailable("nats", ERRORS):
            info = await self._sub.consumer_info()
        return info.num_pending

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(*ERRORS):  # the last acks leave before the socket closes
                await self._nc.flush(timeout=5)
            await self._nc.close()


async def _log_error(exc: Exception) -> None:
    """One line per connection problem (nats-py's default logs a traceback each time)."""
    log.warning("nats: %s: %s", type(exc).__name__, exc)


def _headers(item: Outgoing) -> dict[str, str]:
    return {"Nats-Msg-Id": item.dedupe, "Shipyard-Record-Id": item.key}


def _msg(message: Message) -> Msg:
    handle = message.handle
    assert isinstance(handle, Msg)
    return handle
