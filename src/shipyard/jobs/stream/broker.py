"""What the stream loop needs of a broker, and how `--source` URLs name one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from shipyard.core.errors import InvalidArgument, ShipyardError, Unavailable

SCHEMES = ("redis", "rediss", "nats", "amqp", "amqps")


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery: `id` is the broker's id of the message (stable across redeliveries),
    `deliveries` how often it has been handed out so far (1 on the first try)."""

    id: str
    body: bytes
    deliveries: int
    handle: object  # the broker's acknowledgement token


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A result or dead letter. `key` is the record's id; `dedupe` (derived from the input
    message's id) is the same on every redelivery, for brokers that deduplicate (NATS
    Nats-Msg-Id) and for consumers that want to (AMQP message_id)."""

    key: str
    dedupe: str
    body: bytes


class Broker(Protocol):
    """One source stream/subject/queue, its output and its dead-letter destination."""

    name: str  # "redis", "nats", "amqp": the metrics label

    async def connect(self) -> None: ...

    async def fetch(self, max_messages: int, max_wait_s: float) -> list[Message]:
        """Up to `max_messages`, waiting at most `max_wait_s` for the first one."""
        ...

    async def publish(self, results: Sequence[Outgoing], dead: Sequence[Outgoing]) -> None:
        """Publish results and dead letters durably; raises if any was not accepted."""
        ...

    async def ack(self, messages: Sequence[Message]) -> None: ...

    async def release(self, messages: Sequence[Message]) -> None:
        """Give messages back for another try (where the broker needs telling)."""
        ...

    async def lag(self) -> int | None:
        """Messages not yet handed to this group, when the broker can tell."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where to read (`input`), write results (`output`) and dead letters (`dlq`)."""

    url: str
    input: str
    output: str
    dlq: str
    group: str
    consumer: str
    prefetch: int = 128  # RabbitMQ: unacknowledged deliveries a consumer may hold
    # A message handed to a consumer that has not acknowledged it for this long is given to
    # another (Redis XAUTOCLAIM min-idle, NATS ack wait): how soon a dead consumer's work moves.
    claim_idle_s: float = 30.0

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme


def check_source(url: str) -> str:
    """The URL's scheme, or InvalidArgument naming the ones that work."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise InvalidArgument(f"--source {url!r} is not a URL: {exc}") from None
    if scheme not in SCHEMES:
        raise InvalidArgument(
            f"--source {url!r}: unknown broker {scheme or '(no scheme)'!r}; use "
            "redis://host:6379/0, nats://host:4222 or amqp://user:pass@host:5672/"
        )
    return scheme


def check_name(what: str, value: str) -> str:
    if not value or len(value) > 200 or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidArgument(f"{what} {value!r} must be 1-200 printable characters, no spaces")
    return value


@contextmanager
def unavailable(broker: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """The client library's connection errors as Unavailable: the loop backs off and retries."""
    try:
        yield
    except ShipyardError:
        raise
    except errors as exc:
        raise Unavailable(f"{broker}: {type(exc).__name__}: {str(exc)[:200]}") from exc
