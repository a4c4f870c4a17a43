"""Settings of `shipyard serve`, read once from SHIPYARD_SERVE_* (CLI flags override them).

Also the one place a model-server process adjusts its own environment: native libraries
(OpenMP, BLAS) and prometheus_client read environment variables when they are first
imported, so `prepare_worker_environment` must run before anything imports them.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shipyard.core.errors import InvalidArgument

MIB = 1024 * 1024
_BROKER_PREFIXES = ("redis://", "rediss://", "nats://")
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})
# One intra-op thread per worker process: workers, not threads, use the cores.
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPYARD_SERVE_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="REST port (0: any free).")
    grpc_port: int | None = Field(default=8081, ge=0, le=65535, description="gRPC port.")
    workers: int = Field(default=0, ge=0, le=256, description="Worker processes; 0 = CPUs.")
    max_batch_size: int = Field(default=64, ge=1, description="Rows per model call.")
    max_batch_wait_ms: float = Field(default=0.0, ge=0, le=10_000, description="Batch window.")
    batch_threads: int = Field(
        default=0, ge=0, le=256, description="Threads running model calls; 0 = on the loop."
    )
    max_queue: int = Field(default=2048, ge=1, description="Queued requests per model.")
    default_model: str | None = Field(default=None, description="Model behind /invocations.")
    insecure: bool = Field(
        default=False, description="Allow binding a non-loopback host without --auth."
    )
    auth: bool = Field(default=False, description="Require API keys (shipyard keys create).")
    metrics_public: bool = Field(default=False, description="With auth: /metrics needs no key.")
    ssl_certfile: Path | None = Field(default=None, description="PEM certificate (chain): TLS.")
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key of the cert.")
    access_log: bool = Field(default=True, description="One JSON line per request on stderr.")
    request_timeout_s: float = Field(default=30.0, gt=0, description="Per-request deadline.")
    max_in_flight: int = Field(default=1024, ge=1, description="Requests per worker at once.")
    max_body_bytes: int = Field(default=64 * MIB, ge=1024, description="Also after gunzip.")
    shutdown_delay_s: float = Field(
        default=1.0, ge=0, le=10, description="After SIGTERM: not ready, still serving."
    )
    drain_timeout_s: float = Field(
        default=20.0, gt=0, le=25, description="Longest wait for in-flight requests."
    )
    poll_interval_s: float = Field(default=0.5, gt=0, description="Alias-following period.")
    cache: str | None = Field(
        default=None,
        description="Response cache: 'lru' (in-process, per worker) or a redis:// URL (shared).",
    )
    cache_size: int = Field(
        default=10_000, ge=1, description="Entries of the lru cache per worker."
    )
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")
    all_deployments: bool = Field(default=False, description="Serve every deployment.")
    deployments: tuple[str, ...] = Field(default=(), description="Deployments to serve.")
    stats_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often route statistics are written."
    )
    log_predictions: bool = Field(
        default=True, description="Log every answered request for monitoring (never blocks)."
    )
    log_sinks: tuple[str, ...] = Field(
        default=("parquet",),
        description="Where the prediction log goes: parquet, table, redis://… or nats://….",
    )
    log_sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="Share of requests whose inputs are logged."
    )
    log_exclude: tuple[str, ...] = Field(default=(), description="Input columns never logged.")
    log_hash: tuple[str, ...] = Field(default=(), description="Input columns logged as digests.")
    log_subject: str | None = Field(
        default=None, description="Input column naming the subject (for erasure), as a digest."
    )
    feedback_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Input column whose first value identifies a deployment's prediction for "
        "feedback by key (an order id); stored as a keyed digest.",
    )
    log_queue: int = Field(default=10_000, ge=1, description="Events waiting per worker.")
    log_roll_s: float = Field(
        # eventlog.parquet.DEFAULT_ROLL_S, written out: importing it would load pyarrow and
        # numpy before prepare_worker_environment has set their thread counts.
        default=300.0,
        ge=1,
        le=86_400,
        description="Seconds a Parquet log part stays open: the most an event waits to be read.",
    )

    @model_validator(mode="after")
    def _check_bind(self) -> ServeSettings:
        if not (self.auth or self.insecure) and not is_loopback(self.host):
            raise ValueError(
                f"binding {self.host} exposes the server without authentication; bind "
                "127.0.0.1, pass --auth to require API keys (SHIPYARD_SERVE_AUTH=1) or "
                "--insecure to serve without them (SHIPYARD_SERVE_INSECURE=1)"
            )
        return self

    @model_validator(mode="after")
    def _check_cache(self) -> ServeSettings:
        schemes = ("redis://", "rediss://", "unix://")
        if self.cache is not None and self.cache != "lru" and not self.cache.startswith(schemes):
            raise ValueError("--cache must be 'lru' or a redis:// URL")
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> ServeSettings:
        files = {"--ssl-certfile": self.ssl_certfile, "--ssl-keyfile": self.ssl_keyfile}
        given = [flag for flag, path in files.items() if path is not None]
        if len(given) == 1:
            raise ValueError("TLS needs both --ssl-certfile and --ssl-keyfile (only one given)")
        for flag, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"{flag}: no such file {str(path)[:200]!r}")
        return self

    @model_validator(mode="after")
    def _check_log_sinks(self) -> ServeSettings:
        # Checked by name here: importing the sinks would import prometheus_client before
        # prepare_worker_environment sets its mode.
        for spec in self.log_sinks:
            if spec not in ("parquet", "table") and not spec.startswith(_BROKER_PREFIXES):
                raise ValueError(
                    f"unknown prediction log sink {spec[:200]!r}: use parquet, table, "
                    "redis://… or nats://…"
                )
        if len(set(self.log_sinks)) != len(self.log_sinks):
            raise ValueError(f"a prediction log sink is named twice: {', '.join(self.log_sinks)}")
        return self

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None and self.ssl_keyfile is not None

    def tls_pair(self) -> tuple[bytes, bytes] | None:
        """(private key, certificate chain) as PEM bytes, for gRPC; None without TLS."""
        if self.ssl_certfile is None or self.ssl_keyfile is None:
            return None
        return self.ssl_keyfile.read_bytes(), self.ssl_certfile.read_bytes()

    def worker_count(self, cpus: int | None) -> int:
        return self.workers or max(1, cpus or 1)


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def prepare_worker_environment(metrics_dir: Path | None) -> None:
    """Fix thread counts and the Prometheus mode for this process and the ones it spawns."""
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = "1"  # noqa: TID251 - the one sanctioned environment write
    if metrics_dir is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # noqa: TID251
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # noqa: TID251


def check_default_model(settings: ServeSettings, names: list[str]) -> str:
    """The model behind /invocations: --default-model (one of the served) or the first."""
    if settings.default_model is None:
        return names[0] if names else ""
    if settings.default_model not in names:
        raise InvalidArgument(
            f"--default-model {settings.default_model!r} is not one of the served models "
            f"({', '.join(names)})"
        )
    return settings.default_model
