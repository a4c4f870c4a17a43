"""`shipyard server`: the control plane — the management API, the rollout controller,
retraining and monitoring.

`run_control_plane` opens the registry, issues the first admin key on a database that never
had one (printed once, to stderr), binds the port, and serves the API until SIGTERM/SIGINT.
The rollout controller runs as a task of the server's event loop (its database work in
threads), started with the server and cancelled when it stops. Retraining and monitoring
(drift of the logged predictions, alerts that start retraining) run in daemon threads.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from datetime import timedelta

from prometheus_client import CollectorRegistry, ProcessCollector
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shipyard.app.housekeeping import Housekeeping
from shipyard.app.monitor_loop import MonitorConfig, open_monitor
from shipyard.app.retrain import RetrainLoop, open_runner
from shipyard.app.serve import open_store
from shipyard.app.settings import Settings
from shipyard.app.workers import bind
from shipyard.auth.keys import KeyStore, ensure_admin_key
from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.alert_rules import performance_rule
from shipyard.monitoring.eventlog import parse_age
from shipyard.monitoring.gauges import MonitoringGauges
from shipyard.registry.service import Registry
from shipyard.rollouts.controller import Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.progress import Rollouts
from shipyard.transports.api.app import create_app
from shipyard.transports.api.context import ApiOptions, Background, MiB, acting_as
from shipyard.transports.api.server import make_api_server, run_api

log = logging.getLogger("shipyard.server")

CONTROLLER_ACTOR = "controller"
# Who the ledger names for what the retraining loop does (runs, candidates, canaries).
RETRAIN_ACTOR = "retraining"
FOREVER = "forever"
MIN_RETENTION = timedelta(days=1)


class ControlSettings(BaseSettings):
    """Settings of `shipyard server`, from SHIPYARD_SERVER_* (CLI flags override them)."""

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_SERVER_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="API port (0: any free).")
    max_upload_mb: int = Field(default=256, ge=1, le=16_384, description="Model upload limit.")
    max_body_kb: int = Field(default=1024, ge=1, le=65_536, description="Other request bodies.")
    controller: bool = Field(default=True, description="Run the rollout controller.")
    controller_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="How often the controller looks at rollouts."
    )
    drain_timeout_s: float = Field(default=10.0, gt=0, le=300)
    retrain_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="How often retraining schedules are checked."
    )
    monitor_interval_s: float = Field(
        default=60.0, ge=0, le=86_400, description="How often drift is judged (0: off)."
    )
    monitor_window_s: float = Field(
        default=3600.0, gt=0, le=30 * 86_400, description="Logged predictions judged per check."
    )
    monitor_min_rows: int = Field(
        default=200, ge=1, description="Rows a window needs to be judged."
    )
    alert_fire_after: int = Field(default=3, ge=1, description="Bad windows in a row to fire.")
    alert_resolve_after: int = Field(default=3, ge=1, description="Good windows to resolve.")
    alert_budget_per_hour: int = Field(
        default=4, ge=0, description="Notifications per rule per hour; the rest are suppressed."
    )
    alert_webhook_url: str | None = Field(default=None, description="POST alerts as JSON here.")
    alert_latency_p95_ms: float | None = Field(
        default=None, gt=0, description="Latency SLO: alert when a window's p95 is above it."
    )
    alert_max_error_rate: float | None = Field(
        default=None, gt=0, lt=1, description="Alert when a window's error rate is above it."
    )
    alert_performance: str | None = Field(
        default=None,
        description="Realised performance floor from feedback, e.g. accuracy<0.9 or rmse>2.5.",
    )
    monitor_min_labelled: int = Field(
        default=50, ge=1, description="Labelled rows a window needs for its performance."
    )
    retention: timedelta | None = Field(
        default=timedelta(days=30),
        description="Keep the prediction log and rollout statistics this long (30d, 8w; at "
        "least 1d); 'forever' (None) keeps everything.",
    )
    housekeeping_interval_s: float = Field(
        default=3600.0, gt=0, le=86_400, description="How often retention is applied."
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _period(cls, value: object) -> object:
        """'30d', '8w' or 'forever' as given on the command line or in the environment."""
        shown = repr(value) if isinstance(value, str) else str(value)
        if isinstance(value, str):
            if value.strip().lower() == FOREVER:
                return None
            try:
                value = parse_age(value)
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        if isinstance(value, timedelta) and value < MIN_RETENTION:
            raise ValueError(f"{shown} is shorter than a day; rollouts are judged on that much")
        return value

    @field_validator("alert_performance")
    @classmethod
    def _performance(cls, spec: str | None) -> str | None:
        if spec is not None:
            try:
                performance_rule(spec)
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        return spec

    def api_options(self) -> ApiOptions:
        return ApiOptions(
            max_upload_bytes=self.max_upload_mb * MiB, max_body_bytes=self.max_body_kb * 1024
        )

    def monitor_config(self) -> MonitorConfig:
        return MonitorConfig(
            window=timedelta(seconds=self.monitor_window_s),
            min_rows=self.monitor_min_rows,
            fire_after=self.alert_fire_after,
            resolve_after=self.alert_resolve_after,
            budget_per_hour=self.alert_budget_per_hour,
            webhook_url=self.alert_webhook_url,
            latency_p95_ms=self.alert_latency_p95_ms,
            max_error_rate=self.alert_max_error_rate,
            performance=self.alert_performance,
            min_labelled=self.monitor_min_labelled,
        )


BackgroundFactory = Callable[[Registry, ControlSettings], Background | None]  # None: nothing


def controller_factory(registry: Registry, control: ControlSettings) -> Background:
    """The rollout controller over `registry`, ticking every `controller_interval_s`; its
    decisions are recorded in the ledger as CONTROLLER_ACTOR."""
    deployments = Deployments(acting_as(registry, CONTROLLER_ACTOR))
    return Controller(Rollouts(deployments), tick_s=control.controller_interval_s)


def announce_admin_key(registry: Registry, keys: KeyStore) -> None:
    issued = ensure_admin_key(keys)
    if issued is None:
        return
    key, token = issued
    print(
        f"shipyard server: created the first admin API key {key.id} — it is shown only now, "
        f"store it safely:\n  {token}",
        file=sys.stderr,
        flush=True,
    )


def run_control_plane(
    settings: Settings,
    control: ControlSettings,
    *,
    background: BackgroundFactory = controller_factory,
) -> int:
    """Serve the management API until SIGTERM/SIGINT; returns the exit code."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("shipyard").setLevel(logging.INFO)
    with open_store(settings) as registry:
        keys = KeyStore.for_registry(registry)
        announce_admin_key(registry, keys)
        sock = bind(control.host, control.port, listen=False)
        retraining = RetrainLoop(open_runner(acting_as(registry, RETRAIN_ACTOR), settings))
        retraining.start(control.retrain_interval_s)
        monitoring = None
        housekeeping = None
        # The control plane's own registry (never the global one), shown at GET /metrics.
        metrics = CollectorRegistry()
        ProcessCollector(registry=metrics)
        try:
            if control.monitor_interval_s > 0:
                monitoring = open_monitor(
                    registry,
                    settings.home,
                    control.monitor_config(),
                    on_fire=retraining.on_alert,
                    gauges=MonitoringGauges(metrics),
                )
                monitoring.start(control.monitor_interval_s)
            if control.retention is not None:
                housekeeping = Housekeeping(registry, settings.home, control.retention)
                housekeeping.start(control.housekeeping_interval_s)
            app = create_app(
                registry,
                dataclasses.replace(control.api_options(), home=settings.home),
                key_store=keys,
                background=background(registry, control) if control.controller else None,
                retrainer=retraining,
                metrics_registry=metrics,
            )
            port = int(sock.getsockname()[1])
            host = f"[{control.host}]" if ":" in control.host else control.host
            print(
                f"shipyard server: management API on http://{host}:{port} "
                "(OpenAPI at /openapi.json, API keys required)",
                file=sys.stderr,
                flush=True,
            )
            run_api(make_api_server(app, drain_timeout_s=control.drain_timeout_s), sock)
        finally:
            for loop in (monitoring, housekeeping):
                if loop is not None:
                    loop.close()
            retraining.close(wait=False)
            sock.close()
    return 0
