"""The management API application: routers under /api/v1, the OpenAPI document at
/openapi.json (and /api/v1/openapi.json), error handlers, the audit trail and body limits.

`create_app` takes an open Registry, so tests can build the app in-process; `shipyard server`
(app/control.py) builds it the same way and runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from importlib import metadata

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from shipyard.auth.audit import AuditLog
from shipyard.auth.keys import KeyStore
from shipyard.registry.service import Registry
from shipyard.transports.api import (
    ab,
    audit,
    deployments,
    feedback,
    keys,
    metrics,
    monitoring,
    registry,
    retrain,
)
from shipyard.transports.api.context import ApiOptions, Background, Services
from shipyard.transports.api.errors import install_handlers
from shipyard.transports.api.middleware import AuditTrail, BodyLimit
from shipyard.transports.ui import routes as ui_routes

PREFIX = "/api/v1"


def create_app(
    store: Registry,
    options: ApiOptions | None = None,
    *,
    key_store: KeyStore | None = None,
    background: Background | None = None,
    retrainer: retrain.Retrainer | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The API over `store`; `background` (the rollout controller) runs while it serves;
    `retrainer` (the control plane's retraining loop) takes manual run requests;
    `metrics_registry` is what GET /metrics exposes (None: an empty one)."""
    chosen = options or ApiOptions()
    app = FastAPI(
        title="shipyard management API",
        version=_version(),
        description="Registry, API keys, deployments, rollouts, monitoring, feedback and the audit log. "
        "Every endpoint needs an API key (`Authorization: Bearer sy_...`).",
        lifespan=_running(background),
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.state.services = Services(
        registry=store,
        keys=key_store or KeyStore.for_registry(store),
        audit=AuditLog(store.database),
        options=chosen,
    )
    setattr(app.state, retrain.RETRAINER_STATE, retrainer)
    setattr(app.state, monitoring.DRIFT_CACHE_STATE, monitoring.DriftCache(chosen.drift_cache_s))
    setattr(
        app.state,
        metrics.METRICS_STATE,
        metrics_registry if metrics_registry is not None else CollectorRegistry(),
    )
    install_handlers(app)
    for module in (registry, deployments, ab, monitoring, feedback, keys, audit, retrain):
        app.include_router(module.router, prefix=PREFIX)
    app.include_router(metrics.router)  # /metrics, where Prometheus looks by default
    app.include_router(ui_routes.router)  # the web UI at / and /api/v1/session

    @app.get(f"{PREFIX}/openapi.json", include_in_schema=False)
    def versioned_openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    # Outermost first: the audit trail sees the body limit's 413 too.
    app.add_middleware(
        BodyLimit, max_body_bytes=chosen.max_body_bytes, max_upload_bytes=chosen.max_upload_bytes
    )
    app.add_middleware(AuditTrail, audit=app.state.services.audit, prefix=PREFIX)
    return app


def _version() -> str:
    try:
        return metadata.version("shipyard")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def _running(
    background: Background | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan running `background` as a task while the server is up, cancelled (and
    awaited) when it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background is None:
            yield
            return
        task = asyncio.create_task(background.run(), name="shipyard-background")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
