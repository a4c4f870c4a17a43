"""RabbitMQ: a durable queue consumed with manual acknowledgements and a bounded prefetch.

Several consumers of one queue share it (RabbitMQ's competing consumers: the queue is the
group). Results and dead letters are published persistent to durable queues through the
default exchange, with publisher confirms, before the input is acknowledged. A consumer
that dies leaves its unacknowledged deliveries to be requeued by the broker. RabbitMQ has no
message id of its own: the AMQP `message_id` property names a message when the producer set
it, else a digest of the body does (so a redelivery keeps its id).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelPreconditionFailed, ProbableAuthenticationError

from shipyard.core.errors import FailedPrecondition, Unauthenticated
from shipyard.jobs.stream.broker import Endpoints, Message, Outgoing, unavailable

ERRORS: tuple[type[BaseException], ...] = (AMQPError, OSError, TimeoutError)
CONNECT_TIMEOUT_S = 5.0


class RabbitMQ:
    name = "amqp"

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._input: AbstractQueue | None = None
        self._tag: str | None = None
        self._arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def connect(self) -> None:
        e = self.endpoints
        with unavailable("amqp", ERRORS):
            try:
                self._connection = await aio_pika.connect_robust(e.url, timeout=CONNECT_TIMEOUT_S)
            except ProbableAuthenticationError as exc:
                raise Unauthenticated(f"amqp: the broker refused the login: {exc}") from None
            channel = self._channel = await self._connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=e.prefetch)
            try:
                self._input = await channel.declare_queue(e.input, durable=True)
                for name in (e.output, e.dlq):
                    await channel.declare_queue(name, durable=True)
            except ChannelPreconditionFailed as exc:
                raise FailedPrecondition(
                    f"amqp: a queue exists with other settings than durable: {exc}"
                ) from None
            self._tag = await self._input.consume(self._arrived.put, no_ack=False)

    async def fetch(self, max_messages: int, max_wait_s: float) -> list[Message]:
        try:
            first = await asyncio.wait_for(self._arrived.get(), max_wait_s)
        except TimeoutError:
            return []
        messages = [_message(first)]
        while len(messages) < max_messages and not self._arrived.empty():
            messages.append(_message(self._arrived.get_nowait()))
        return messages

    async def publish(self, results: Sequence[Outgoing], dead: Sequence[Outgoing]) -> None:
        assert self._channel is not None, "connect() first"
        exchange, e = self._channel.default_exchange, self.endpoints
        sends = [(e.output, item) for item in results] + [(e.dlq, item) for item in dead]
        with unavailable("amqp", ERRORS):
            # Concurrently: each publish returns once the broker confirmed it.
            await asyncio.gather(
                *(exchange.publish(_outgoing(item), routing_key=queue) for queue, item in sends)
            )

    async def ack(self, messages: Sequence[Message]) -> None:
        with unavailable("amqp", ERRORS):
            for message in messages:
                await _incoming(message).ack()

    async def release(self, messages: Sequence[Message]) -> None:
        with unavailable("amqp", ERRORS):
            for message in messages:
                await _incoming(message).nack(requeue=True)

    async def lag(self) -> int | None:
        if self._channel is None:
            return None
        with unavailable("amqp", ERRORS):
            # The raw channel: aio-pika's robust channel answers a passive declare from its
            # cache of declared queues, with the count of the first declare.
            raw = await self._channel.get_underlay_channel()
            declared = await raw.queue_declare(self.endpoints.input, passive=True)
        count = declared.message_count
        return None if count is None else int(count)

    async def close(self) -> None:
        if self._connection is None:
            return
        # Deliveries taken but not handled go back to the queue when the channel closes.
        await self._connection.close()


def _message(incoming: AbstractIncomingMessage) -> Message:
    message_id = incoming.message_id or "sha256:" + hashlib.sha256(incoming.body).hexdigest()[:32]
    count = (incoming.headers or {}).get("x-delivery-count")  # quorum queues count tries
    retried = 2 if incoming.redelivered else 1  # classic queues only say "not the first"
    deliveries = count + 1 if isinstance(count, int) else retried
    return Message(message_id, incoming.body, deliveries, incoming)


def _outgoing(item: Outgoing) -> aio_pika.Message:
    return aio_pika.Message(
        item.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=item.dedupe,
        headers={"shipyard-record-id": item.key},
    )


def _incoming(message: Message) -> AbstractIncomingMessage:
    handle = message.handle
    assert isinstance(handle, AbstractIncomingMessage)
    return handle
