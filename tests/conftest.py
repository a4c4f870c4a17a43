"""Fixtures shared by every test folder.

`database_url` runs a test on SQLite (a file in tmp_path) and on PostgreSQL (a fresh database
created for the test and dropped afterwards). `registry` is a Registry on that database with a
local blob store. The PostgreSQL server comes from SHIPYARD_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test); if it does not answer the tests fail, they are
not skipped: run `scripts/services` to start it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from shipyard.registry.service import Registry

# A local Ray head waits 30 s for its GCS server by default; on two cores busy with the other
# test process that start has taken longer (a timeout seen once). Give it Ray's own longer bound.
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")

POSTGRES_URL = os.environ.get(
    "SHIPYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _admin_engine() -> Engine:
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    return create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create database `shipyard_t_<hex>` on the test server, yield its URL, drop it."""
    name = f"shipyard_t_{secrets.token_hex(6)}"
    engine = _admin_engine()
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        engine.dispose()
        shown = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL at {shown} is not reachable ({str(exc.orig).splitlines()[0]}); "
            "run scripts/services to start it",
            pytrace=False,
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'shipyard.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database only (mark the test with pytest.mark.postgres)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def open_registry(
    database_url: str, blob_root: Path, tmp_path: Path
) -> Iterator[Callable[..., Registry]]:
    """Open more registries on the same database and blobs (closed after the test)."""
    opened: list[Registry] = []

    def open_(**options: object) -> Registry:
        options.setdefault("actor", "tester")
        options.setdefault("cache_dir", tmp_path / "blob-cache")
        registry = Registry.open(database_url, blob_root, **options)  # type: ignore[arg-type]
        opened.append(registry)
        return registry

    yield open_
    for registry in opened:
        registry.close()


@pytest.fixture
def registry(open_registry: Callable[..., Registry]) -> Registry:
    """A Registry (actor 'tester') on `database_url` with a LocalBlobStore in tmp_path."""
    return open_registry()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a Ray head node with 2 CPUs, shared by the Ray tests of this process
    (mark their modules xdist_group("ray") so they share one process)."""
    pytest.importorskip("ray")  # the `ray` extra; scripts/install installs it
    from ray_cluster import head_node

    with head_node(tmp_path_factory.mktemp("ray")) as address:
        yield address
