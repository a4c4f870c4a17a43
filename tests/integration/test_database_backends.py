"""Database: migrations on open, append-only ledger, locking and unavailability, both backends."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.storage.database import Database, parse_url
from shipyard.storage.tables import Base


def test_open_migrates_once_and_reopens_without_writing(database_url: str) -> None:
    with Database(database_url) as database:
        assert database.schema_is_current()
        with database.read() as session:
            assert session.execute(text("SELECT revision FROM registry_state")).scalar_one() == 0
    with Database(database_url) as again, again.read() as session:
        assert session.execute(text("SELECT count(*) FROM registry_state")).scalar_one() == 1


def test_migrated_schema_matches_the_orm_tables(database_url: str) -> None:
    engine = create_engine(parse_url(database_url))
    Database(database_url).close()
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_concurrent_first_opens_all_succeed(database_url: str) -> None:
    errors: list[BaseException] = []

    def open_() -> None:
        try:
            Database(database_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("statement", ["UPDATE ledger SET actor = 'mallory'", "DELETE FROM ledger"])
def test_ledger_refuses_update_and_delete(registry: Registry, statement: str) -> None:
    entry = registry.record("deploy.started", details={"replicas": 2}, reason="test")
    with pytest.raises(DBAPIError, match="append-only"), registry.database.write() as session:
        session.execute(text(statement))
    assert registry.ledger() == [entry]


@pytest.mark.postgres
def test_postgres_ledger_refuses_truncate(postgres_url: str, tmp_path: Path) -> None:
    registry = Registry.open(postgres_url, tmp_path / "blobs", actor="t")
    registry.record("key.issued")
    with pytest.raises(DBAPIError, match="append-only"), registry.database.write() as session:
        session.execute(text("TRUNCATE ledger"))
    assert len(registry.ledger()) == 1
    registry.close()


def test_sqlite_file_is_wal_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'x.db'}"
    with Database(url) as database, database.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    assert (tmp_path / "deep" / "er" / "x.db").is_file()


def test_sqlite_in_memory_works(tmp_path: Path) -> None:
    with Registry.open("sqlite://", tmp_path / "blobs", actor="t") as registry:
        assert registry.revision() == 0


def _lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_locked_sqlite_gives_unavailable_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    url = f"sqlite:///{path}"
    Database(url).close()
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    holder = _lock(path)
    try:
        registry = Registry.open(url, tmp_path / "blobs", actor="t", timeout_s=0.5)
        # Reads do not wait for the writer.
        assert registry.list_models() == [] and registry.revision() == 0
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            registry.register_version("fraud", {"m.bin": model}, VersionSpec(flavor="onnx"))
        assert time.monotonic() - started < 5
        assert (
            str(caught.value) == "database is locked (another process holds it for more than 0.5 s)"
        )
    finally:
        holder.rollback()
        holder.close()
    assert registry.list_models() == [] and registry.ledger() == [] and registry.revision() == 0
    assert not list((tmp_path / "blobs" / "sha256").iterdir())
    registry.close()


def test_unreachable_postgres_is_unavailable_without_password() -> None:
    url = "postgresql://shipyard:s3cret-pw@127.0.0.1:1/shipyard"
    with pytest.raises(Unavailable) as caught:
        Database(url, timeout_s=2)
    message = str(caught.value)
    assert message == (
        "cannot reach the database at postgresql://shipyard:***@127.0.0.1:1/shipyard: "
        "connection refused"
    )
    assert "s3cret" not in repr(caught.value) and "s3cret" not in str(caught.value.__cause__)


@pytest.mark.postgres
def test_missing_postgres_database_is_unavailable(postgres_url: str) -> None:
    url = make_url(postgres_url).set(database="shipyard_no_such_db", password="pw0rd")
    with pytest.raises(Unavailable, match="does not exist") as caught:
        Database(url.render_as_string(hide_password=False), timeout_s=2)
    assert "pw0rd" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://u:topsecret@h/db", "not a url :// at all"])
def test_bad_urls_are_invalid_without_echoing_secrets(url: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Database(url)
    assert "topsecret" not in str(caught.value)
