"""The metadata database: one SQLAlchemy engine (two on SQLite), migrated on open.

SQLite (the no-services default) runs in WAL mode. Writers start with BEGIN IMMEDIATE so two
processes serialise on the write lock instead of deadlocking when both try to upgrade a read
lock; readers use a second engine with a plain BEGIN and never wait for writers.
PostgreSQL URLs go through psycopg 3. Operational failures (locked, unreachable, bad
credentials) become `Unavailable` with a message that never contains the password.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import Engine, Insert, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from shipyard.core.errors import InvalidArgument, Unavailable

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key guarding schema upgrades ("SHIPYARD" in ASCII).
MIGRATION_LOCK_KEY = 0x5348495059415244
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}


def parse_url(url: str) -> URL:
    """Parse a database URL, mapping plain PostgreSQL URLs to psycopg 3."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        # The URL may hold a password: do not echo it.
        raise InvalidArgument("the database URL is not a valid SQLAlchemy URL") from exc
    if parsed.drivername in _POSTGRES_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidArgument(
            f"unsupported database {parsed.drivername!r}; use sqlite or postgresql"
        )
    return parsed


def redact(url: URL) -> str:
    """The URL as shown to people: original scheme, password replaced by ***."""
    shown = (
        url.set(drivername=url.get_backend_name()) if url.drivername.startswith("postgres") else url
    )
    return shown.render_as_string(hide_password=True)


def _sqlite_engine(url: URL, timeout_s: float, begin: str, memory: bool) -> Engine:
    options: dict[str, Any] = {"connect_args": {"timeout": timeout_s}}
    if memory:
        options = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # SQLAlchemy's documented pysqlite recipe: stop the driver's own BEGIN handling...
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # ...and emit our own, IMMEDIATE for writers so the write lock is taken up front.
        connection.exec_driver_sql(begin)

    return engine


def _postgres_engine(url: URL, timeout_s: float) -> Engine:
    lock_ms = max(1, int(timeout_s * 1000))
    connect_args = {
        "connect_timeout": max(2, math.ceil(timeout_s)),
        # Bound lock waits like SQLite's busy timeout, so a stuck writer surfaces as Unavailable.
        "options": f"-c lock_timeout={lock_ms}",
    }
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True)


def _reason(message: str, timeout_s: float) -> str:
    low = message.lower()
    known = {
        "connection refused": "connection refused",
        "password authentication failed": "password authentication failed",
        "no password supplied": "a password is required",
        "timeout expired": f"no answer within {timeout_s} s",
        "could not translate host name": "unknown host",
        "name or service not known": "unknown host",
        "server closed the connection": "the server closed the connection",
        "terminating connection": "the server closed the connection",
    }
    for needle, reason in known.items():
        if needle in low:
            return reason
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return first.removeprefix("connection failed: ")[:300] or "unknown error"


class Database:
    """The metadata database at `url`, with its schema brought up to date on open."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        if timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        parsed = parse_url(url)
        self.url = redact(parsed)
        self._password = parsed.password
        self.dialect = parsed.get_backend_name()
        self._open_lock: Path | None = None
        if self.dialect == "sqlite":
            self._writer, self._reader = self._sqlite_engines(parsed)
        else:
            self._writer = self._reader = _postgres_engine(parsed, timeout_s)
        try:
            with self._opening():
                self.migrate()
        except BaseException:
            self.close()
            raise

    def _sqlite_engines(self, url: URL) -> tuple[Engine, Engine]:
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            engine = _sqlite_engine(url, self.timeout_s, "BEGIN IMMEDIATE", memory=True)
            return engine, engine
        try:
            Path(database).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create the directory of {self.url}: {exc}") from exc
        self._open_lock = Path(database).expanduser().absolute().with_suffix(".open.lock")
        writer = _sqlite_engine(url, self.timeout_s, "BEGIN IMMEDIATE", memory=False)
        reader = _sqlite_engine(url, self.timeout_s, "BEGIN", memory=False)
        return writer, reader

    @contextmanager
    def _opening(self) -> Iterator[None]:
        """Serialise first opens of one SQLite file across threads and processes.

        A new file starts in rollback-journal mode until a connection switches it to WAL; two
        openers racing there (one switching the journal mode, one migrating) could wait on
        each other until the busy timeout. The switch and the migration run under this lock;
        once the file is WAL and current, later opens hold it only for a moment."""
        if self._open_lock is None:
            yield
            return
        try:
            with FileLock(self._open_lock, timeout=self.timeout_s):
                yield
        except FileLockTimeout:
            raise Unavailable(
                f"database is locked (another process has been opening it for more than "
                f"{self.timeout_s} s)"
            ) from None

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def insert_ignoring(self, table: Any, keys: Sequence[str] | None = None) -> Insert:
        """INSERT ... ON CONFLICT (keys) DO NOTHING in this backend's dialect: a row whose
        key is already stored is skipped instead of failing the statement (both backends
        speak it; the core Insert does not)."""
        dialect = postgresql if self.is_postgres else sqlite
        statement: Insert = dialect.insert(table).on_conflict_do_nothing(index_elements=keys)
        return statement

    def close(self) -> None:
        self._writer.dispose()
        self._reader.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction: committed on success, rolled back on error."""
        with (
            self.translate_errors(),
            Session(self._writer, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading one consistent snapshot; never takes the write lock."""
        with self.translate_errors(), Session(self._reader, expire_on_commit=False) as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            raise self.unavailable(exc) from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise self.unavailable(exc) from None
            raise

    def unavailable(self, exc: Exception) -> Unavailable:
        orig = getattr(exc, "orig", None)
        message = str(orig if orig is not None else exc)
        low = message.lower()
        if "locked" in low or "lock timeout" in low or "database is busy" in low:
            text_ = (
                f"database is locked (another process holds it for more than {self.timeout_s} s)"
            )
        elif "deadlock" in low or "could not serialize" in low:
            text_ = "the database aborted a conflicting transaction; try again"
        elif self.dialect == "sqlite":
            text_ = f"cannot open the database at {self.url}: {_reason(message, self.timeout_s)}"
        else:
            text_ = f"cannot reach the database at {self.url}: {_reason(message, self.timeout_s)}"
        if self._password:
            text_ = text_.replace(self._password, "***")
        return Unavailable(text_)

    # -- migrations ------------------------------------------------------------------------

    def _alembic_config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        config.attributes["connection"] = connection
        return config

    def schema_is_current(self) -> bool:
        heads = set(ScriptDirectory.from_config(self._alembic_config()).get_heads())
        with self.translate_errors(), self._reader.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
            connection.rollback()
        return current == heads

    def migrate(self) -> None:
        """Upgrade the schema to head; a no-op (and no write lock) when it already is."""
        if self.schema_is_current():
            return
        with self.translate_errors(), self._writer.begin() as connection:
            if self.is_postgres:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            command.upgrade(self._alembic_config(connection), "head")
