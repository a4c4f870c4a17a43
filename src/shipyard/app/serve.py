"""`shipyard serve`: settings → registry → model host → data plane → REST (and gRPC) app.

`serve()` runs in the CLI process: it checks the references, reserves the port and either
runs one worker in-process or supervises several (workers.py). `run_worker()` builds the whole
stack inside one worker process; nothing is shared between workers except the port and, with
several workers, the Prometheus multiprocess directory that /metrics aggregates.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shipyard.app.serve_settings import (
    ServeSettings,
    check_default_model,
    prepare_worker_environment,
)
from shipyard.app.settings import Settings
from shipyard.app.workers import STARTUP_FAILED, Supervisor, bind
from shipyard.core.errors import InvalidArgument
from shipyard.core.refs import ModelRef
from shipyard.packaging.bundle_registry import ACTOR, BLOB_DIR, import_bundle
from shipyard.registry import service
from shipyard.rollouts.deployments import Deployments

log = logging.getLogger("shipyard.serve")


class GrpcServer(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace: float | None) -> None: ...


def grpc_server_factory(
    plane: Any, serve: ServeSettings, metrics: Any, guard: Any = None
) -> GrpcServer | None:
    """The gRPC server of one worker, or None to serve REST only (the gRPC transport's hook).
    `guard` (transports.rest.auth.Guard) requires API keys; TLS follows the settings."""
    if serve.grpc_port is None:
        return None
    from shipyard.transports.grpc.server import create_grpc_server

    server: GrpcServer = create_grpc_server(
        plane,
        host=serve.host,
        port=serve.grpc_port,
        metrics=metrics,
        guard=guard,
        tls=serve.tls_pair(),
    )
    return server


@dataclass(frozen=True, slots=True)
class ServeSpec:
    """Everything a worker needs; pickled to spawned workers."""

    settings: Settings
    serve: ServeSettings
    refs: tuple[str, ...]
    default_model: str
    port: int
    metrics_dir: Path | None
    events_home: Path  # where Parquet prediction logs go (HOME/events)


def serve(
    settings: Settings,
    serve_settings: ServeSettings,
    refs: Sequence[str],
    *,
    events_home: Path | None = None,
) -> int:
    """Run the model server until SIGTERM/SIGINT; returns the process exit code."""
    parsed, deployments = _check_refs(settings, serve_settings, refs)
    default = check_default_model(serve_settings, [r.name for r in parsed] + deployments)
    count = serve_settings.worker_count(os.cpu_count())
    reservation = bind(serve_settings.host, serve_settings.http_port, listen=False)
    port = int(reservation.getsockname()[1])
    run_dir = settings.home / "run" / f"serve-{os.getpid()}-{secrets.token_hex(4)}"
    metrics_dir = run_dir / "metrics" if count > 1 else None
    if metrics_dir is not None:
        metrics_dir.mkdir(parents=True)
    prepare_worker_environment(metrics_dir)  # before any worker imports prometheus_client
    events = events_home or settings.home
    spec = ServeSpec(settings, serve_settings, tuple(refs), default, port, metrics_dir, events)
    _announce(spec, count)
    try:
        if count == 1:
            return run_worker(spec, 0)
        stop_s = serve_settings.shutdown_delay_s + serve_settings.drain_timeout_s + 3.0
        target = functools.partial(worker_main, spec)
        return Supervisor(target, count, stop_timeout_s=stop_s, metrics_dir=metrics_dir).run()
    finally:
        reservation.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def serve_bundle(
    settings: Settings, serve_settings: ServeSettings, bundle: Path, public_key: Path | None
) -> int:
    """Verify `bundle` and serve it from a private embedded registry (removed at exit): the
    user's registry (SHIPYARD_HOME, SHIPYARD_DATABASE_URL) is neither needed nor touched."""
    if serve_settings.auth:
        raise InvalidArgument(
            "--auth checks API keys stored in a registry; a --bundle server has none "
            "(put it behind an authenticating proxy, or serve the model from the registry)"
        )
    if serve_settings.log_predictions and "table" in serve_settings.log_sinks:
        raise InvalidArgument(
            "the 'table' prediction log sink writes to a registry database; a --bundle server "
            "has none (use parquet, redis://… or nats://…)"
        )
    home = Path(tempfile.mkdtemp(prefix="shipyard-serve-bundle-"))
    try:
        imported = import_bundle(bundle, home, public_key=public_key)
        checked = (
            "signature verified" if imported.info.signature_verified else "not signature-checked"
        )
        print(
            f"shipyard serve: bundle {bundle} verified ({len(imported.info.files)} files "
            f"match MANIFEST.json, {checked})",
            file=sys.stderr,
            flush=True,
        )
        private = Settings(
            home=home,
            database_url=imported.database_url,
            blob_url=str(home / BLOB_DIR),
            actor=ACTOR,
            database_timeout_s=settings.database_timeout_s,
        )
        # The prediction log outlives the private registry: it goes under the user's HOME.
        return serve(private, serve_settings, [imported.version.ref], events_home=settings.home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _check_refs(
    settings: Settings, serve_settings: ServeSettings, refs: Sequence[str]
) -> tuple[list[ModelRef], list[str]]:
    """Fail in the CLI, with a clear message, before any worker starts. Returns the parsed
    refs and the names of the deployments served now."""
    routed = serve_settings.all_deployments or bool(serve_settings.deployments)
    if not refs and not routed:
        raise InvalidArgument(
            "give at least one model to serve (name, name:3 or name@alias) or --deployments"
        )
    parsed = [ModelRef.parse(r) for r in refs]
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        raise InvalidArgument("each model name can be served once; got " + ", ".join(refs))
    store = open_store(settings)
    try:
        for ref in parsed:
            store.resolve(ref)  # NotFound with the registry's own message
        deployments = _check_deployments(store, serve_settings, names) if routed else []
    finally:
        store.close()
    return parsed, deployments


def _check_deployments(
    store: service.Registry, serve_settings: ServeSettings, models: list[str]
) -> list[str]:
    """The deployments to serve now: each one named must exist and not be a served model's
    name (a served model wins over a deployment of the same name)."""
    known = Deployments(store)
    if serve_settings.all_deployments:
        found = [d.name for d in known.list()]
        found += [n for n in serve_settings.deployments if n not in found]
    else:
        found = list(dict.fromkeys(serve_settings.deployments))
    for name in serve_settings.deployments:
        known.get(name)  # NotFound with the deployments' own message
        if name in models:
            raise InvalidArgument(f"{name!r} is given both as a model and as a deployment")
    return [name for name in found if name not in models]


def open_store(settings: Settings) -> service.Registry:
    return service.Registry.open(
        settings.resolved_database_url,
        settings.resolved_blob_location,
        cache_dir=settings.cache_dir,
        actor=settings.actor,
        timeout_s=settings.database_timeout_s,
    )


def _announce(spec: ServeSpec, count: int) -> None:
    host = f"[{spec.serve.host}]" if ":" in spec.serve.host else spec.serve.host
    grpc = "" if spec.serve.grpc_port is None else f", gRPC on port {spec.serve.grpc_port}"
    scheme = "https" if spec.serve.tls else "http"
    keys = ", API keys required" if spec.serve.auth else ""
    served = list(spec.refs)
    if spec.serve.all_deployments:
        served.append("every deployment")
    elif spec.serve.deployments:
        served.append("deployments " + ", ".join(spec.serve.deployments))
    print(
        f"shipyard serve: {', '.join(served)} on {scheme}://{host}:{spec.port} "
        f"({count} worker{'s' if count > 1 else ''}{grpc}{keys})",
        file=sys.stderr,
        flush=True,
    )


def worker_main(spec: ServeSpec, index: int) -> None:
    """Entry point of a spawned worker process."""
    sys.exit(run_worker(spec, index))


def run_worker(spec: ServeSpec, index: int) -> int:
    """Build the stack and serve HTTP in this process until stopped; returns the exit code."""
    prepare_worker_environment(spec.metrics_dir)
    from shipyard.app.stack import build_stack  # imports prometheus_client, onnxruntime
    from shipyard.transports.rest.server import serve_on

    stack = build_stack(spec, index)
    sock = bind(spec.serve.host, spec.port, listen=False)
    try:
        serve_on(stack.server, sock)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return STARTUP_FAILED if stack.failed else 0
