"""`shipyard stream`: settings → registry → model host → data plane → broker consumer loop.

The same ModelHost and DataPlane as `shipyard serve` (one inference path, the same Batcher),
without HTTP. The host follows the registry, so `fraud@production` moves with its alias.
SIGTERM/SIGINT finish the batch in hand, publish and acknowledge it, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server

from shipyard.app.serve import open_store
from shipyard.app.settings import Settings
from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.core.refs import ModelRef
from shipyard.jobs.stream.broker import Broker, Endpoints, check_name, check_source
from shipyard.jobs.stream.loop import StreamProcessor, StreamSettings, StreamSummary
from shipyard.jobs.stream.metrics import StreamMetrics
from shipyard.packaging.load import load_version
from shipyard.serving.batcher import BatchSettings
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.host import ModelHost
from shipyard.serving.metrics import ServingMetrics

log = logging.getLogger("shipyard.stream")

DRAIN_S = 10.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    ref: str
    source: str
    input: str
    output: str
    dlq: str | None = None  # default: INPUT.dlq
    group: str = "shipyard"
    consumer: str | None = None  # default: host-pid, unique per process
    claim_idle_s: float = 30.0
    metrics_port: int | None = None
    settings: StreamSettings = field(default_factory=StreamSettings)

    def endpoints(self) -> Endpoints:
        check_source(self.source)
        consumer = self.consumer or f"{socket.gethostname()}-{os.getpid()}"
        dlq = self.dlq or f"{self.input}.dlq"
        for what, value in [
            ("--input", self.input),
            ("--output", self.output),
            ("--dlq", dlq),
            ("--group", self.group),
            ("--consumer", consumer),
        ]:
            check_name(what, value)
        if len({self.input, self.output, dlq}) != 3:
            raise InvalidArgument("--input, --output and --dlq must be three different names")
        if not 0.01 <= self.claim_idle_s <= 86_400:
            raise InvalidArgument(f"--claim-idle-s must be 0.01..86400, got {self.claim_idle_s}")
        return Endpoints(
            self.source,
            self.input,
            self.output,
            dlq,
            self.group,
            consumer,
            prefetch=2 * self.settings.batch_size,
            claim_idle_s=self.claim_idle_s,
        )


def make_broker(endpoints: Endpoints) -> Broker:
    """The adapter for the URL's scheme; the client libraries are the `stream` extra."""
    scheme = check_source(endpoints.url)
    try:
        if scheme in ("redis", "rediss"):
            from shipyard.jobs.stream.redis_streams import RedisStreams

            return RedisStreams(endpoints)
        if scheme == "nats":
            from shipyard.jobs.stream.nats_jetstream import NatsJetStream

            return NatsJetStream(endpoints)
        from shipyard.jobs.stream.rabbitmq import RabbitMQ

        return RabbitMQ(endpoints)
    except ImportError as exc:
        raise FailedPrecondition(
            f"the {scheme} client is not installed ({exc.name}); pip install 'shipyard[stream]'"
        ) from None


async def run_stream(
    settings: Settings,
    spec: StreamSpec,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
) -> StreamSummary:
    """Consume until `stop` is set (or the source is empty, with `until_empty`)."""
    endpoints = spec.endpoints()
    ref = ModelRef.parse(spec.ref)
    broker = make_broker(endpoints)
    registry = registry or CollectorRegistry(auto_describe=True)
    store = open_store(settings)
    try:
        store.resolve(ref)  # NotFound, with the registry's message, before connecting
        batch = BatchSettings(max_batch_size=spec.settings.batch_size)
        serving = ServingMetrics(registry)
        host = ModelHost(store, [ref], loader=load_version, batch=batch, metrics=serving)
        await host.start()
        try:
            try:  # close even a half-made connection (refused login, missing stream)
                await broker.connect()
                metrics = StreamMetrics(registry, broker.name, endpoints.input)
                processor = StreamProcessor(
                    broker, DataPlane(host, serving), ref.name, spec.settings, metrics
                )
                return await processor.run(stop)
            finally:
                await broker.close()
        finally:
            await host.drain(DRAIN_S)
    finally:
        store.close()


def stream(settings: Settings, spec: StreamSpec) -> StreamSummary:
    """Run `shipyard stream` in this process until SIGTERM/SIGINT."""
    spec.endpoints()  # refuse bad arguments before loading anything
    registry = CollectorRegistry(auto_describe=True)
    if spec.metrics_port is not None:
        start_http_server(spec.metrics_port, addr="127.0.0.1", registry=registry)

    async def main() -> StreamSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        return await run_stream(settings, spec, stop, registry)

    return asyncio.run(main())
