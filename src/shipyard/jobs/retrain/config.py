"""A pipeline's configuration: where training data comes from, how the candidate is judged
and how it is released. Users write it as YAML; every field is checked and errors name it.

    label: is_fraud
    sources:
      - path: data/train.parquet        # Parquet or CSV files (globs allowed)
      - logged: {since: 30d}            # the model's logged predictions joined with feedback
      - sql: SELECT * FROM training     # a read-only query, bounded by max_rows
        database: postgresql://reader@db/warehouse   # or duckdb: data/warehouse.duckdb
        password_env: WAREHOUSE_PASSWORD             # never a password in the URL
    holdout: {fraction: 0.2, time_column: ts}
    params: {n_estimators: 50}
    seed: 0
    timeout_s: 1800
    cooldown_s: 3600
    gate: {tolerance: 0.01, segments: [region], max_latency_ratio: 1.5}
    release: {deployment: fraud, policy: {steps: [10, 50, 100]}}   # or {alias: champion}
    schedule: "0 3 * * *"             # cron, UTC
    on_alerts: [drift, accuracy_drop]  # alert rules on the model that start a run ("*": any)
    new_labels: 5000                   # or once this many new labels arrived
    ray: {address: "ray-head:6379", num_cpus: 4}   # train as a Ray task instead of a process
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shipyard.codecs.documents import read_yaml, validate_document
from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.eventlog.retention import parse_age

MAX_CONFIG_BYTES = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathSource(_Strict):
    """Parquet or CSV files (globs allowed)."""

    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.endswith((".parquet", ".pq", ".csv")):
            raise ValueError("a source path ends in .parquet, .pq or .csv")
        return path

    def resolved(self, base: Path) -> PathSource:
        return self.model_copy(update={"path": str((base / self.path).resolve())})


class Logged(_Strict):
    since: str = "30d"  # how far back, e.g. 30d, 12h
    deployment: str | None = None  # only predictions served through this deployment
    max_events: int = Field(default=5_000_000, ge=1, le=100_000_000)  # more fails the run

    @field_validator("since")
    @classmethod
    def _since(cls, since: str) -> str:
        try:
            parse_age(since)
        except InvalidArgument as exc:  # as a ValueError, so the message names the field
            raise ValueError(exc.message) from None
        return since


class LoggedSource(_Strict):
    """The model's logged predictions (inputs) joined with their feedback (the label)."""

    logged: Logged

    def resolved(self, base: Path) -> LoggedSource:
        return self


MAX_SQL_ROWS = 5_000_000


class SqlSource(_Strict):
    """The result of one read-only query on PostgreSQL (`database`) or a DuckDB file."""

    sql: str = Field(min_length=1, max_length=100_000)
    database: str | None = None  # postgresql://user@host/db, without a password
    # The environment variable holding the password, read where the run executes. The
    # config is stored in the registry, so a password never goes in it (PGPASSWORD and
    # ~/.pgpass of the control plane work too).
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    duckdb: str | None = None  # path of a DuckDB database file, opened read-only
    max_rows: int = Field(default=MAX_SQL_ROWS, ge=1, le=100_000_000)

    @field_validator("database")
    @classmethod
    def _database(cls, database: str | None) -> str | None:
        if database is not None:
            try:
                url = make_url(database)
            except (ArgumentError, ValueError, TypeError):
                raise ValueError("the database is not a valid SQLAlchemy URL") from None
            if url.get_backend_name() != "postgresql":
                raise ValueError("a SQL source database is a postgresql:// URL (or use duckdb)")
            if url.password is not None or "password" in url.query:
                raise ValueError(
                    "the database URL holds a password, which would be stored in the "
                    "registry; put it in an environment variable of the control plane and "
                    "name that in password_env (or use PGPASSWORD or ~/.pgpass)"
                )
        return database

    @model_validator(mode="after")
    def _one_database(self) -> SqlSource:
        if (self.database is None) == (self.duckdb is None):
            raise ValueError("a SQL source names either a database URL or a duckdb file")
        if self.password_env is not None and self.database is None:
            raise ValueError("password_env goes with a database URL, not a duckdb file")
        return self

    @property
    def where(self) -> str:
        """The database as shown to people: a URL's password masked."""
        if self.database is not None:
            shown: str = make_url(self.database).render_as_string(hide_password=True)
            return shown
        return f"duckdb:{self.duckdb}"

    def resolved(self, base: Path) -> SqlSource:
        if self.duckdb is None:
            return self
        return self.model_copy(update={"duckdb": str((base / self.duckdb).resolve())})


def _source_kind(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return {PathSource: "path", LoggedSource: "logged", SqlSource: "sql"}.get(type(value))
    if isinstance(value, dict):
        return next((key for key in ("path", "logged", "sql") if key in value), None)
    return None


Source = Annotated[
    Annotated[PathSource, Tag("path")]
    | Annotated[LoggedSource, Tag("logged")]
    | Annotated[SqlSource, Tag("sql")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="a source is {path: ...}, {logged: {since: ...}} or {sql: ...}",
    ),
]


class Holdout(_Strict):
    fraction: float = Field(default=0.2, gt=0, lt=1)
    time_column: str | None = None


class Gate(_Strict):
    tolerance: float = Field(default=0.01, ge=0, lt=1)
    segments: tuple[str, ...] = ()
    max_latency_ratio: float | None = Field(default=1.5, ge=1)


class Release(_Strict):
    deployment: str | None = None
    policy: dict[str, Any] | None = None
    alias: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Release:
        if (self.deployment is None) == (self.alias is None):
            raise ValueError("release names either a deployment or an alias")
        if self.policy is not None and self.deployment is None:
            raise ValueError("a policy applies to a deployment release")
        return self


class RayExecutor(_Strict):
    """Train as a task on a Ray cluster instead of a local child process. Every node must
    have shipyard and the pipeline's package installed, and reach the registry's database,
    its blob store and the run directory (a shared filesystem) at the same addresses."""

    address: str = Field(default="auto", min_length=1, max_length=500)  # head, or RAY_ADDRESS
    num_cpus: float = Field(default=1.0, gt=0, le=1024)
    num_gpus: float = Field(default=0.0, ge=0, le=64)


class PipelineConfig(_Strict):
    label: str
    sources: tuple[Source, ...] = Field(min_length=1)
    holdout: Holdout = Holdout()
    params: dict[str, Any] = {}
    seed: int = 0
    timeout_s: float = Field(default=1800.0, gt=0, le=7 * 86_400)
    cooldown_s: float = Field(default=3600.0, ge=0)
    gate: Gate = Gate()
    release: Release | None = None
    schedule: str | None = None  # cron syntax, UTC
    # Alert rules (by name, or "*" for any) on the model that start a run.
    on_alerts: tuple[str, ...] = ()
    # Start a run once this many new labelled predictions arrived since the last run.
    new_labels: int | None = Field(default=None, ge=1)
    ray: RayExecutor | None = None  # train on a Ray cluster (extra shipyard[ray])

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: str | None) -> str | None:
        if schedule is not None:
            from croniter import croniter

            if not croniter.is_valid(schedule):
                raise ValueError(f"{schedule!r} is not a cron expression")
        return schedule

    def to_json(self) -> dict[str, Any]:
        """The config as stored, shown (API, CLI, ledger) and read by the training process;
        it holds no secret (a database password is named by password_env, not given)."""
        return self.model_dump(mode="json")

    def resolved(self, base: Path) -> PipelineConfig:
        """File paths (sources, DuckDB files) relative to `base` made absolute."""
        sources = tuple(source.resolved(base) for source in self.sources)
        return self.model_copy(update={"sources": sources})


def parse_config(data: object) -> PipelineConfig:
    shape = "a pipeline config is a mapping of fields (label, sources, ...)"
    return validate_document(PipelineConfig, data, field_label="pipeline config field", shape=shape)


def load_config(path: Path) -> PipelineConfig:
    return parse_config(read_yaml(path, what="pipeline config", max_bytes=MAX_CONFIG_BYTES))
