"""`shipyard serve REF [REF ...]`: the model server (OIP v2 REST + gRPC, KServe v1, MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from shipyard.app.serve import serve as run_server
from shipyard.app.serve import serve_bundle
from shipyard.app.serve_settings import ServeSettings
from shipyard.app.settings import Settings
from shipyard.cli.errors import exits_by_kind
from shipyard.core.errors import InvalidArgument


def install(app: typer.Typer) -> None:
    app.command("serve")(serve)


@exits_by_kind
def serve(
    refs: Annotated[
        list[str] | None, typer.Argument(help="Models to serve: name, name:3, name@alias.")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(help="Serve an exported bundle (directory or .tar.gz) instead of REFs."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            "--verify",
            help="With --bundle: Ed25519 public key (PEM) it must be signed with.",
        ),
    ] = None,
    all_deployments: Annotated[
        bool, typer.Option("--deployments", help="Also serve every deployment, by name.")
    ] = False,
    deployment: Annotated[
        list[str] | None, typer.Option(help="Also serve this deployment (repeatable).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind [127.0.0.1].")] = None,
    http_port: Annotated[int | None, typer.Option(help="REST port [8080]; 0 = any free.")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port [8081].")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve REST only.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [number of CPUs].", min=1)
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Rows per model call [64].")] = None,
    max_batch_wait_ms: Annotated[
        float | None, typer.Option(help="How long a batch waits for more rows [0].")
    ] = None,
    batch_threads: Annotated[
        int | None, typer.Option(help="Threads for model calls; 0 runs them on the loop [0].")
    ] = None,
    default_model: Annotated[
        str | None, typer.Option(help="The model behind /invocations [the first REF].")
    ] = None,
    request_timeout_s: Annotated[
        float | None, typer.Option(help="Per-request deadline in seconds [30].")
    ] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="JSON access log [on].")
    ] = None,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth",
            help="Require API keys (Authorization: Bearer or X-API-Key; gRPC authorization "
            "metadata): predict for inference, predict or read for metadata, read for /metrics, "
            "admin for load/unload; health endpoints stay open. Create keys with "
            "`shipyard keys create NAME --scope predict`.",
        ),
    ] = False,
    metrics_public: Annotated[
        bool, typer.Option("--metrics-public", help="With --auth: serve /metrics without a key.")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Allow binding a non-loopback host without --auth (no API keys)."
        ),
    ] = False,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain): serve REST and gRPC over TLS only."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="PEM private key of --ssl-certfile (both or neither).")
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            help="Response cache keyed by model version and input: 'lru' (per worker) or "
            "redis://HOST:6379/0 (shared) [off]."
        ),
    ] = None,
    cache_size: Annotated[
        int | None, typer.Option(help="Entries in the lru cache [10000].", min=1)
    ] = None,
    log_predictions: Annotated[
        bool | None,
        typer.Option(
            "--log-predictions/--no-log-predictions",
            help="Log every answered request for monitoring (never blocks a request) [on].",
        ),
    ] = None,
    log_sink: Annotated[
        list[str] | None,
        typer.Option(
            help="Where the log goes (repeatable): parquet (HOME/events, the default), table "
            "(registry database), redis://HOST:PORT/DB?stream=S or nats://HOST:PORT?stream=S."
        ),
    ] = None,
    log_sample_rate: Annotated[
        float | None, typer.Option(help="Share of requests whose inputs are logged [1.0].")
    ] = None,
    log_exclude: Annotated[
        list[str] | None, typer.Option(help="Input column never logged (repeatable).")
    ] = None,
    log_hash: Annotated[
        list[str] | None, typer.Option(help="Input column logged as a keyed digest (repeatable).")
    ] = None,
    log_subject: Annotated[
        str | None,
        typer.Option(help="Input column naming the subject, for `shipyard logs erase --key`."),
    ] = None,
    feedback_key: Annotated[
        str | None,
        typer.Option(
            help="Input column identifying each deployment prediction (an order id), so "
            "feedback can name it instead of the request id."
        ),
    ] = None,
) -> None:
    """Serve models over OIP v2 REST (and gRPC), KServe v1 and MLflow /invocations.

    --bundle serves an exported bundle, checked file by file, without any registry.

    `--deployments` (every one) or `--deployment NAME` also serves deployments by name, each
    request routed by the deployment's current revision (followed live, no restart).

    Every answered request is logged for monitoring (`shipyard logs`, `shipyard monitor`):
    Parquet under HOME/events by default; --no-log-predictions turns it off.

    Binds 127.0.0.1 by default; another interface needs --auth (or, knowingly, --insecure)."""
    overrides: dict[str, Any] = {
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "workers": workers,
        "max_batch_size": max_batch_size,
        "max_batch_wait_ms": max_batch_wait_ms,
        "batch_threads": batch_threads,
        "default_model": default_model,
        "request_timeout_s": request_timeout_s,
        "access_log": access_log,
        "insecure": insecure or None,
        "auth": auth or None,
        "metrics_public": metrics_public or None,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
        "cache": cache,
        "cache_size": cache_size,
        "all_deployments": all_deployments or None,
        "deployments": tuple(deployment) if deployment else None,
        "log_predictions": log_predictions,
        "log_sinks": tuple(log_sink) if log_sink else None,
        "log_sample_rate": log_sample_rate,
        "log_exclude": tuple(log_exclude) if log_exclude else None,
        "log_hash": tuple(log_hash) if log_hash else None,
        "log_subject": log_subject,
        "feedback_key": feedback_key,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if no_grpc:
        given["grpc_port"] = None
    try:
        settings = ServeSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "serve settings"
        raise InvalidArgument(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    if bundle is None:
        if public_key is not None:
            raise InvalidArgument("--public-key applies to --bundle only")
        raise typer.Exit(run_server(Settings(), settings, refs or []))
    if refs:
        raise InvalidArgument("give either models to serve or --bundle, not both")
    raise typer.Exit(serve_bundle(Settings(), settings, bundle, public_key))
