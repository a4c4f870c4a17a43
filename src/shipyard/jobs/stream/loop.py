"""The broker-neutral consumer loop: fetch a batch, score it, publish, then acknowledge.

At-least-once: a message is acknowledged only after its result (or dead letter) was accepted
by the broker. A consumer that dies between the two leaves the message to be delivered again
and its result is published again under the same id, with the same outputs (the model
version permitting): duplicates are idempotent rewrites, never losses.

Records are scored through `DataPlane.predict`, i.e. the same Batcher as online serving.
A batch goes to the model as one table; if the model refuses it, each record is scored on
its own (concurrently, so the Batcher still merges them) and only the bad ones are dead-
lettered. Errors that are not the record's fault (model overloaded, shutting down) leave the
message unacknowledged for another try, and after `max_deliveries` tries it is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from shipyard.core.errors import ErrorKind, Internal, InvalidArgument, ShipyardError
from shipyard.jobs.stream.broker import Broker, Message, Outgoing
from shipyard.jobs.stream.metrics import StreamMetrics
from shipyard.jobs.stream.records import (
    EXHAUSTED,
    MALFORMED,
    REJECTED,
    Malformed,
    Record,
    dead_letter,
    decode,
    record_id,
    result,
    rows_of_outputs,
)
from shipyard.serving.dataplane import DataPlane

log = logging.getLogger("shipyard.stream")

IDLE_WAIT_S = 0.5  # longest fetch with nothing arriving: bounds how late a stop is seen
LAG_INTERVAL_S = 2.0
MAX_BACKOFF_S = 5.0
# Refusals that are the record's fault: retrying cannot help, so it is dead-lettered at once.
RECORD_FAULTS = {ErrorKind.INVALID_ARGUMENT, ErrorKind.PAYLOAD_TOO_LARGE}


@dataclass(frozen=True, slots=True)
class StreamSettings:
    batch_size: int = 64
    max_wait_ms: float = 5.0  # after the first message, how long to wait to fill a batch
    id_field: str = "id"
    max_deliveries: int = 5
    until_empty: bool = False  # stop once a fetch finds nothing (drain, then exit)

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not 1 <= self.batch_size <= 10_000:
            raise InvalidArgument(f"--batch-size must be 1..10000, got {self.batch_size}")
        if not 0 <= self.max_wait_ms <= 60_000:
            raise InvalidArgument(f"--max-wait-ms must be 0..60000, got {self.max_wait_ms}")
        if not 1 <= self.max_deliveries <= 1000:
            raise InvalidArgument(f"--max-deliveries must be 1..1000, got {self.max_deliveries}")
        if not self.id_field:
            raise InvalidArgument("--id-field must not be empty")


@dataclass(frozen=True, slots=True)
class StreamSummary:
    model: str
    broker: str
    processed: int
    failed: int
    dead_lettered: int
    seconds: float
    lag: int | None

    @property
    def records_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "broker": self.broker,
            "processed": self.processed,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.records_per_s, 1),
            "lag": self.lag,
        }

    def line(self) -> str:
        lag = "unknown" if self.lag is None else f"{self.lag:,}"
        return (
            f"shipyard stream: {self.model} via {self.broker}: {self.processed:,} processed, "
            f"{self.dead_lettered:,} dead-lettered, {self.failed:,} failed tries, "
            f"{self.seconds:,.1f} s ({self.records_per_s:,.0f} records/s), lag {lag}"
        )


@dataclass(slots=True)
class _Outcome:
    results: list[Outgoing]
    dead: list[Outgoing]
    retry: list[Message]


class StreamProcessor:
    def __init__(
        self,
        broker: Broker,
        plane: DataPlane,
        model: str,
        settings: StreamSettings,
        metrics: StreamMetrics,
    ) -> None:
        self.broker = broker
        self.plane = plane
        self.model = model
        self.settings = settings
        self.metrics = metrics

    async def run(self, stop: asyncio.Event) -> StreamSummary:
        """Consume until `stop` is set (the batch in hand is finished and acknowledged)."""
        started = time.monotonic()
        next_lag = 0.0
        backoff = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_lag:
                await self._update_lag()
                next_lag = time.monotonic() + LAG_INTERVAL_S
            try:
                messages = await self._fetch_batch()
                if messages:
                    await self._handle(messages)
                backoff = 0.0
            except (ShipyardError, OSError, TimeoutError) as exc:
                # The broker went away or refused a publish: nothing was acknowledged, so
                # the batch is delivered again once it is back.
                backoff = min(MAX_BACKOFF_S, backoff * 2 or 0.1)
                log.warning("stream: %s; retrying in %.1f s", _describe(exc), backoff)
                await _sleep_unless(stop, backoff)
                continue
            if not messages and self.settings.until_empty:
                break
        await self._update_lag()
        tally = self.metrics.tally
        return StreamSummary(
            self.model,
            self.broker.name,
            tally.processed,
            tally.failed,
            tally.dead_lettered,
            time.monotonic() - started,
            tally.lag,
        )

    async def _fetch_batch(self) -> list[Message]:
        size = self.settings.batch_size
        messages = await self.broker.fetch(size, IDLE_WAIT_S)
        if not messages or self.settings.max_wait_ms <= 0:
            return messages
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while len(messages) < size and (left := deadline - time.monotonic()) > 0:
            try:
                more = await self.broker.fetch(size - len(messages), left)
            except (ShipyardError, OSError, TimeoutError) as exc:
                # Score what is in hand: dropping it would leave it unacknowledged until
                # the broker hands it out again (the ack wait), a stall for nothing.
                log.info("stream: filling a batch: %s", _describe(exc))
                break
            if not more:
                break
            messages.extend(more)
        return messages

    async def _handle(self, messages: Sequence[Message]) -> None:
        outcome = _Outcome([], [], [])
        records: list[Record] = []
        for message in messages:
            try:
                records.append(decode(message, self.settings.id_field))
            except Malformed as exc:
                rid = record_id(message, self.settings.id_field)
                outcome.dead.append(dead_letter(message, MALFORMED, str(exc), rid))
                self.metrics.dead_lettered(MALFORMED)
        for group in _by_features(records):
            await self._score(group, outcome)
        try:
            await self.broker.publish(outcome.results, outcome.dead)
        except (ShipyardError, OSError, TimeoutError):
            await self._give_back(messages)
            raise
        retry = {id(m) for m in outcome.retry}
        await self.broker.ack([m for m in messages if id(m) not in retry])
        if outcome.retry:
            await self.broker.release(outcome.retry)
        self.metrics.processed(len(outcome.results))

    async def _score(self, records: list[Record], outcome: _Outcome) -> None:
        frame = pd.DataFrame.from_records([r.features for r in records])
        try:
            served, outputs = await self.plane.predict(self.model, None, frame)
        except Exception as exc:
            if len(records) == 1:
                self._refused(records[0], _as_error(exc), outcome)
                return
            # One bad record must not fail the others: score each alone, concurrently, so
            # the Batcher merges them again and hands each its own answer or error.
            await asyncio.gather(*(self._score([r], outcome) for r in records))
            return
        for record, row in zip(records, rows_of_outputs(outputs), strict=True):
            outcome.results.append(result(record, served.name, served.version, row))

    def _refused(self, record: Record, exc: ShipyardError, outcome: _Outcome) -> None:
        message = record.message
        if exc.kind in RECORD_FAULTS:
            outcome.dead.append(dead_letter(message, REJECTED, exc.message, record.id))
            self.metrics.dead_lettered(REJECTED)
        elif message.deliveries >= self.settings.max_deliveries:
            reason = f"failed {message.deliveries} times; last: {exc.message}"
            outcome.dead.append(dead_letter(message, EXHAUSTED, reason, record.id))
            self.metrics.dead_lettered(EXHAUSTED)
        else:
            log.info("stream: record %s will be tried again: %s", record.id, exc.message)
            outcome.retry.append(message)
            self.metrics.failed(1)

    async def _give_back(self, messages: Sequence[Message]) -> None:
        """After a failed publish: nothing was acknowledged; hand the batch back now rather
        than hold it (RabbitMQ would keep it on this channel for as long as it lives)."""
        try:
            await self.broker.release(messages)
        except (ShipyardError, OSError, TimeoutError) as exc:
            log.info("stream: could not release a batch: %s", _describe(exc))

    async def _update_lag(self) -> None:
        try:
            self.metrics.lag(await self.broker.lag())
        except Exception as exc:  # lag is informative: never worth stopping for
            log.debug("stream: lag unknown: %s", exc)


def _by_features(records: list[Record]) -> list[list[Record]]:
    """Records with the same feature names, together: a table of records that name different
    features would fill the gaps with NaN, scoring a record that misses a feature."""
    groups: dict[frozenset[str], list[Record]] = {}
    for record in records:
        groups.setdefault(frozenset(record.features), []).append(record)
    return list(groups.values())


def _as_error(exc: Exception) -> ShipyardError:
    """A failure that is not a ShipyardError is a bug or an environment problem, not the
    record's fault: INTERNAL, so the record is retried and then dead-lettered, never lost,
    and the consumer keeps going."""
    if isinstance(exc, ShipyardError):
        return exc
    log.error("stream: scoring failed unexpectedly", exc_info=exc)
    return Internal(f"scoring failed: {type(exc).__name__}: {str(exc)[:200]}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    return f"{type(exc).__name__}: {str(exc)[:200]}"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
