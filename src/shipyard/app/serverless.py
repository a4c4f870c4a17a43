"""`shipyard.app.serverless.handler`: a Lambda-style function serving one exported bundle.

Set the function's handler to `shipyard.app.serverless.handler` and SHIPYARD_SERVERLESS_BUNDLE
to the bundle (directory or .tar.gz) shipped with the function (SHIPYARD_SERVERLESS_PUBLIC_KEY
to require its signature). The first invocation of a container verifies the bundle, imports it
into a private registry under the temporary directory (Lambda's /tmp), loads the model and
keeps it for every later invocation: the cold start is paid once per container and logged.
Requests go through the same data plane and REST app as `shipyard serve` (OIP v2, KServe v1,
MLflow /invocations).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shipyard.core.refs import ModelRef
from shipyard.packaging.bundle_registry import ACTOR, import_bundle
from shipyard.packaging.load import load_version
from shipyard.registry.service import Registry
from shipyard.serving.batcher import BatchSettings
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.host import ModelHost
from shipyard.serving.metrics import ServingMetrics
from shipyard.transports.rest.app import RestApp, RestOptions
from shipyard.transports.serverless import LambdaFunction, lambda_handler

log = logging.getLogger("shipyard.serverless")


class ServerlessSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHIPYARD_SERVERLESS_", frozen=True, extra="ignore"
    )

    bundle: Path = Field(description="The bundle to serve: a directory or a .tar.gz.")
    public_key: Path | None = Field(default=None, description="Require this Ed25519 signer.")
    request_timeout_s: float = Field(default=25.0, gt=0, description="Per-request deadline.")
    access_log: bool = Field(default=True, description="One JSON line per request.")


@dataclass(slots=True)
class ColdStart:
    """What the first invocation of a container cost (seconds)."""

    import_s: float = 0.0
    load_s: float = 0.0


def build_handler(settings: ServerlessSettings) -> tuple[LambdaFunction, ColdStart]:
    """Verify and import the bundle now; the model loads at the first event."""
    cold = ColdStart()
    began = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="shipyard-serverless-"))
    imported = import_bundle(settings.bundle, home, public_key=settings.public_key)
    store = Registry.open(imported.database_url, imported.blob_location, actor=ACTOR)
    cold.import_s = time.perf_counter() - began
    metrics = ServingMetrics(CollectorRegistry(auto_describe=True))
    host = ModelHost(
        store,
        [ModelRef.parse(imported.version.ref)],
        loader=load_version,
        batch=BatchSettings(max_batch_size=64, max_wait_ms=0.0),
        metrics=metrics,
    )
    app = RestApp(
        DataPlane(host, metrics),
        options=RestOptions(
            request_timeout_s=settings.request_timeout_s, access_log=settings.access_log
        ),
        observer=metrics,
        exporter=lambda: (generate_latest(metrics.registry), CONTENT_TYPE_LATEST),
    )

    async def start() -> None:
        began = time.perf_counter()
        await host.start()
        cold.load_s = time.perf_counter() - began
        log.info(
            "cold start: %s verified and imported in %.0f ms, loaded in %.0f ms",
            imported.version.ref, cold.import_s * 1000, cold.load_s * 1000,
        )  # fmt: skip

    return lambda_handler(app, start), cold


_handler: LambdaFunction | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The function entry point: built on the first event, reused by the container after."""
    global _handler
    if _handler is None:
        _handler, _ = build_handler(ServerlessSettings())  # type: ignore[call-arg]
    return _handler(event, context)
