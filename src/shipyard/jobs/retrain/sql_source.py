"""A `sql` training source: the result of one read-only query on PostgreSQL or DuckDB.

Read-only twice over: PostgreSQL runs the query in a READ ONLY transaction through a
server-side cursor (`DECLARE ... CURSOR FOR`, which takes exactly one SELECT/VALUES query and
no data-modifying WITH); DuckDB opens the file with read_only=True and takes one SELECT
statement. The result is bounded by `max_rows`: one more row is an error, never a silent cut.
The password, if any, comes from the environment variable `password_env` names, read here
(the config itself never holds one); messages never show it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from shipyard.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from shipyard.jobs.retrain.config import SqlSource

FETCH_ROWS = 50_000
CONNECT_TIMEOUT_S = 10
QUERY_KEYWORDS = {"select", "with", "values", "table"}
# Whitespace, opening parentheses and comments before a query's first keyword.
LEADING = re.compile(r"^(?:\s|\(|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SqlData:
    data: pd.DataFrame
    report: dict[str, Any]


def read_sql(source: SqlSource) -> SqlData:
    data = _postgres(source) if source.database is not None else _duckdb(source)
    if len(data) > source.max_rows:
        raise InvalidArgument(
            f"the SQL source on {source.where} returned more than max_rows={source.max_rows} "
            "rows; narrow the query or raise max_rows"
        )
    report = {"kind": "sql", "database": source.where, "rows": len(data)}
    return SqlData(data, report)


def _postgres(source: SqlSource) -> pd.DataFrame:
    assert source.database is not None  # read_sql dispatches on it
    # DECLARE would refuse anything else too, but with a less readable syntax error.
    words = LEADING.sub("", source.sql).split(None, 1)
    first = words[0].lower() if words else ""
    if first not in QUERY_KEYWORDS:
        raise InvalidArgument(
            f"the SQL source on {source.where} must be one SELECT query, not {first.upper()!r}"
        )
    url = engine_url(source)
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )
    try:
        connection = engine.connect()
    except SQLAlchemyError as exc:
        engine.dispose()
        raise Unavailable(
            f"cannot reach the SQL source database {source.where}: {_line(exc, url.password)}"
        ) from None
    try:
        with connection, connection.begin():
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = connection.execution_options(
                stream_results=True, yield_per=FETCH_ROWS
            ).execute(text(source.sql))
            try:
                columns = list(result.keys())
                frames, held = [], 0
                # One row past the bound is enough to know it is exceeded.
                while held <= source.max_rows and (chunk := result.fetchmany(FETCH_ROWS)):
                    frame = pd.DataFrame.from_records(chunk, columns=columns, coerce_float=True)
                    frames.append(frame)
                    held += len(chunk)
            finally:
                result.close()  # the server-side cursor, also when stopped at the bound
    except SQLAlchemyError as exc:
        raise InvalidArgument(
            f"the SQL query on {source.where} failed: {_line(exc, url.password)}"
        ) from None
    finally:
        engine.dispose()
    if not frames:
        return pd.DataFrame({name: [] for name in columns})
    return pd.concat(frames, ignore_index=True)


def _duckdb(source: SqlSource) -> pd.DataFrame:
    import duckdb  # here: half a second to import, and only this source needs it

    assert source.duckdb is not None  # read_sql dispatches on it
    try:
        statements = duckdb.extract_statements(source.sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise InvalidArgument(
                f"the SQL source on {source.where} must be one SELECT query, "
                f"got {len(statements)} statement(s)"
                + (f" of type {statements[0].type.name}" if len(statements) == 1 else "")
            )
        with duckdb.connect(source.duckdb, read_only=True) as connection:
            frame: pd.DataFrame = connection.sql(source.sql).limit(source.max_rows + 1).df()
    except duckdb.Error as exc:
        raise InvalidArgument(
            f"the SQL source on {source.where} failed: {_line(exc, None)}"
        ) from None
    return frame


def engine_url(source: SqlSource) -> URL:
    """The psycopg URL of a PostgreSQL source, with the password from `password_env`."""
    assert source.database is not None
    url = make_url(source.database).set(drivername="postgresql+psycopg")
    if source.password_env is None:
        return url
    password = os.environ.get(source.password_env)  # noqa: TID251 - a user-named secret
    if password is None:
        raise FailedPrecondition(
            f"the SQL source on {source.where} takes its password from the environment "
            f"variable {source.password_env}, which is not set where the run executes"
        )
    return url.set(password=password)


def _line(exc: BaseException, password: object) -> str:
    """The driver's own first line (not SQLAlchemy's, which repeats the SQL), password masked."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    line = lines[0][:300] if lines else type(cause).__name__
    return line.replace(str(password), "***") if password else line
