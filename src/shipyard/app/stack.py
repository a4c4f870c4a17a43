"""One worker's object graph: registry store, metrics, model host, data plane, servers.

Built inside the worker process (after `prepare_worker_environment`), started by the ASGI
lifespan: the HTTP listener answers liveness at once while models load in the background,
and readiness turns 200 only when every model is loaded. A load failure stops the worker
with STARTUP_FAILED so the supervisor does not restart it in a loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from shipyard.app import serve as serve_module
from shipyard.app.serve import GrpcServer, ServeSpec, open_store
from shipyard.auth.keys import KeyStore
from shipyard.codecs.limits import Limits
from shipyard.core.refs import ModelRef
from shipyard.monitoring.eventlog.logger import PredictionLogger
from shipyard.monitoring.eventlog.privacy import load_or_create_key
from shipyard.monitoring.eventlog.sinks import open_sinks
from shipyard.packaging.load import load_version
from shipyard.registry.service import Registry
from shipyard.rollouts.recorder import Recorder
from shipyard.rollouts.router import Router
from shipyard.rollouts.watcher import Watcher
from shipyard.serving.batcher import BatchSettings
from shipyard.serving.cache import ResponseCache, cache_from_spec
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.host import ModelHost
from shipyard.serving.metrics import ServingMetrics
from shipyard.transports.rest.app import RestApp, RestOptions
from shipyard.transports.rest.auth import Guard
from shipyard.transports.rest.requestlog import configure_logging
from shipyard.transports.rest.server import DrainingServer, HttpOptions, make_server

log = logging.getLogger("shipyard.serve")


class Stack:
    """The running pieces of one worker and its lifespan hooks."""

    def __init__(self, spec: ServeSpec, index: int) -> None:
        serve = spec.serve
        self.spec = spec
        self.index = index
        self.failed = False
        self.store = open_store(spec.settings)
        self.metrics = ServingMetrics(CollectorRegistry(auto_describe=True))
        batch = BatchSettings(
            max_batch_size=serve.max_batch_size,
            max_wait_ms=serve.max_batch_wait_ms,
            max_queue=serve.max_queue,
            max_concurrent_batches=max(1, serve.batch_threads),
            executor_threads=serve.batch_threads,
        )
        refs = [ModelRef.parse(r) for r in spec.refs]
        # The host's first model is the default one (/invocations, KServe v1 without a name).
        refs.sort(key=lambda ref: ref.name != spec.default_model)
        routed = serve.all_deployments or bool(serve.deployments)
        self.host = ModelHost(
            self.store,
            refs,
            loader=load_version,
            batch=batch,
            metrics=self.metrics,
            poll_interval_s=serve.poll_interval_s,
            require_refs=not routed,
        )
        self.cache: ResponseCache | None = (
            cache_from_spec(serve.cache, max_entries=serve.cache_size) if serve.cache else None
        )
        self.recorder: Recorder | None = None
        self.watcher: Watcher | None = None
        router: Router | None = None
        if routed:
            self.recorder = Recorder(
                self.store.database,
                flush_interval_s=serve.stats_interval_s,
                hash_key=load_or_create_key(spec.events_home) if serve.feedback_key else None,
            )
            router = Router(self.recorder, excluded=[ref.name for ref in refs])
            self.watcher = Watcher(
                self.store,
                self.host,
                router,
                names=None if serve.all_deployments else serve.deployments,
                poll_interval_s=serve.poll_interval_s,
            )
        self.events = _prediction_logger(spec, self.store, self.metrics.registry)
        self.plane = DataPlane(
            self.host,
            self.metrics,
            cache=self.cache,
            routing=router,
            default_model=spec.default_model or None,
            events=self.events,
            feedback_key=serve.feedback_key,
        )
        options = RestOptions(
            limits=Limits(max_body_bytes=serve.max_body_bytes),
            request_timeout_s=serve.request_timeout_s,
            max_in_flight=serve.max_in_flight,
            access_log=serve.access_log,
            metrics_public=serve.metrics_public,
        )
        # One KeyStore (and key cache) per worker, shared by REST and gRPC.
        self.guard = Guard(KeyStore.for_registry(self.store)) if serve.auth else None
        self.app = RestApp(
            self.plane,
            options=options,
            observer=self.metrics,
            exporter=_exporter(self.metrics, spec.metrics_dir),
            startup=[self._start],
            shutdown=[self._stop],
            guard=self.guard,
        )
        http = HttpOptions(
            shutdown_delay_s=serve.shutdown_delay_s,
            drain_timeout_s=serve.drain_timeout_s,
            ssl_certfile=str(serve.ssl_certfile) if serve.tls else None,
            ssl_keyfile=str(serve.ssl_keyfile) if serve.tls else None,
        )
        self.server: DrainingServer = make_server(self.app, http)
        self._grpc: GrpcServer | None = None
        self._loading: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        self._grpc = serve_module.grpc_server_factory(
            self.plane, self.spec.serve, self.metrics, self.guard
        )
        if self._grpc is not None:
            await self._grpc.start()
        self._loading = asyncio.get_running_loop().create_task(self._load(), name="load-models")

    async def _load(self) -> None:
        try:
            await self.host.start()
            if self.watcher is not None and self.recorder is not None:
                await self.watcher.start()
                self.recorder.start()
        except Exception:
            log.exception("worker %d: the models could not be loaded", self.index)
            self.failed = True
            self.server.stop_now()
            return
        # Everything alive now (modules, models, runtimes) lives as long as the worker: out of
        # the collector's sight, a full collection walks only what requests allocate.
        gc.freeze()
        log.info("worker %d: ready (%s)", self.index, ", ".join(self.spec.refs))

    async def _stop(self) -> None:
        drain = self.spec.serve.drain_timeout_s
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._grpc is not None:
            await self._grpc.stop(drain)
        if self.watcher is not None:
            await self.watcher.stop()
        await self.host.drain(drain)
        await self.plane.close()
        if self.events is not None:
            await asyncio.to_thread(self.events.close)  # writes what is queued, bounded
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.stop)  # writes what is left
        if self.cache is not None:
            await self.cache.close()
        self.store.close()


def _prediction_logger(
    spec: ServeSpec, store: Registry, registry: CollectorRegistry
) -> PredictionLogger | None:
    serve = spec.serve
    if not serve.log_predictions:
        return None
    home = spec.events_home
    sinks = open_sinks(serve.log_sinks, home=home, database=store.database, roll_s=serve.log_roll_s)
    return PredictionLogger(
        sinks,
        hash_key=load_or_create_key(home),
        registry=registry,
        sample_rate=serve.log_sample_rate,
        exclude=serve.log_exclude,
        hash_columns=serve.log_hash,
        subject_column=serve.log_subject,
        max_queue=serve.log_queue,
    )


def build_stack(spec: ServeSpec, index: int) -> Stack:
    configure_logging(spec.serve.log_level.upper())
    return Stack(spec, index)


def _exporter(metrics: ServingMetrics, metrics_dir: Path | None) -> Callable[[], tuple[bytes, str]]:
    if metrics_dir is None:
        return lambda: (generate_latest(metrics.registry), CONTENT_TYPE_LATEST)

    def aggregate() -> tuple[bytes, str]:
        metrics.flush()  # this worker's observations of the current tick; others flush per tick
        # Every worker's mmap files, read fresh per scrape (prometheus_client's documented way).
        merged = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(merged, path=str(metrics_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST

    return aggregate
