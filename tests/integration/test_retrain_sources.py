"""Training data from logged predictions joined with feedback, and from read-only SQL queries
(PostgreSQL, DuckDB): what each gives, what it drops and says so, how a run fails when a
source does, and that a database password is never stored: it comes from the environment
variable `password_env` names and never reaches the config, run record, log or ledger."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from shipyard.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from shipyard.core.events import PredictionEvent
from shipyard.jobs.retrain.config import LoggedSource, SqlSource, parse_config
from shipyard.jobs.retrain.logged_source import read_logged
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.jobs.retrain.runner import Runner, StoreSpec
from shipyard.jobs.retrain.sql_source import engine_url, read_sql
from shipyard.monitoring.eventlog import ParquetSink
from shipyard.monitoring.feedback import Feedback, FeedbackStore
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry

TRAIN_MODULE = """
from sklearn.linear_model import LogisticRegression

def good(context):
    return LogisticRegression(max_iter=500).fit(context.features, context.target)
"""
PASSWORD = "s3cret-pw-4242"
PASSWORD_ENV = "SHIPYARD_TEST_WAREHOUSE_PASSWORD"
NOW = datetime.now(UTC)


def _data(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["label"] = (frame["a"] + 0.5 * frame["b"] > 0).astype(np.int64)
    return frame


def _event(request_id: str, rows: pd.DataFrame, age: timedelta, model: str = "fraud") -> Any:
    return PredictionEvent(
        request_id=request_id,
        model=model,
        version=1,
        at=NOW - age,
        inputs={name: rows[name].tolist() for name in ("a", "b", "c")},
        outputs={"label": [0] * len(rows)},
        latency_ms=1.0,
        deployment="fraud-api",
    )


def _log(home: Path, events: list[Any]) -> None:
    sink = ParquetSink(home)
    sink.write(events)
    sink.close()


@pytest.fixture
def setup(registry: Registry, tmp_path: Path, database_url: str, blob_root: Path) -> Any:
    package = tmp_path / "project" / "trainpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(textwrap.dedent(TRAIN_MODULE))
    # An outdated champion (fitted on labels that no longer hold): any source's fresh data wins.
    seen = _data(400, 7)
    features = seen.drop(columns=["label"])
    stale = np.random.default_rng(7).permutation(seen["label"].to_numpy())
    champion = LogisticRegression(max_iter=500).fit(features, stale)
    register_model(registry, champion, Registration(name="fraud", sample_input=features.head(20)))
    home = tmp_path / "home"
    runner = Runner(
        Pipelines(registry),
        StoreSpec(database_url, str(blob_root), "retrainer", home=str(home)),
        tmp_path / "runs",
        cwd=tmp_path / "project",
    )
    return runner, home


def _register(runner: Runner, sources: list[dict[str, Any]]) -> None:
    config = parse_config(
        {
            "label": "label",
            "sources": sources,
            "cooldown_s": 0,
            "timeout_s": 120,
            "gate": {"tolerance": 0.05, "max_latency_ratio": 20},
            "release": {"alias": "champion"},
        }
    )
    runner.pipelines.register("p", model="fraud", entry="trainpkg.steps:good", config=config)


def _assert_untouched(runner: Runner) -> None:
    """A failed run registered nothing, released nothing and left nothing running."""
    assert runner.registry.resolve("fraud").version == 1
    assert [v.version for v in runner.registry.list_versions("fraud")] == [1]
    assert runner.pipelines.recover() == []


# -- logged predictions joined with feedback ---------------------------------------------------


def _log_traffic(home: Path, registry: Registry, labelled: int, unlabelled: int) -> pd.DataFrame:
    """`labelled + unlabelled` single-row requests (oldest first), feedback for the first
    `labelled`; returns the labelled rows in request order."""
    data = _data(labelled + unlabelled, 3)
    total = len(data)
    events = [_event(f"r{i}", data.iloc[[i]], timedelta(minutes=total - i)) for i in range(total)]
    _log(home, events)
    FeedbackStore(registry.database).add(
        [Feedback(f"r{i}", int(data["label"].iloc[i])) for i in range(labelled)], "labeller"
    )
    return data.iloc[:labelled].reset_index(drop=True)


def test_logged_rows_are_joined_with_feedback_and_the_rest_counted(
    registry: Registry, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    expected = _log_traffic(home, registry, labelled=6, unlabelled=3)
    batch = _data(4, 9)
    _log(
        home,
        [
            # A request of 4 rows with one feedback value: no per-row label, dropped.
            _event("batch", batch, timedelta(minutes=1)),
            # Older than `since`, and another model's prediction: not read at all.
            _event("old", _data(1, 10), timedelta(days=40)),
            _event("r0", _data(1, 11), timedelta(minutes=5), model="other"),
            # A second event of request r1 (a retry): its newest inputs count, once.
            _event("r1", expected.iloc[[1]], timedelta(seconds=30)),
        ],
    )
    FeedbackStore(registry.database).add([Feedback("batch", 1), Feedback("old", 0)], "labeller")
    source = LoggedSource.model_validate({"logged": {"since": "30d"}})
    read = read_logged(source, model="fraud", label="y", home=home, database=registry.database)
    assert read.report == {
        "kind": "logged",
        "since": "30d",
        "deployment": None,
        "max_events": 5_000_000,
        "logged_rows": 13,  # 9 single-row requests + 4 rows of one batch
        "without_feedback": 3,
        "multi_row": 4,
        "rows": 6,
    }
    assert list(read.data.columns) == ["a", "b", "c", "y"]
    # Oldest first (r1 moved to its newest event's time), label as given.
    order = [0, 2, 3, 4, 5, 1]
    want = expected.iloc[order].reset_index(drop=True).rename(columns={"label": "y"})
    pd.testing.assert_frame_equal(read.data, want, check_dtype=False)
    assert read.data["y"].dtype == np.int64

    # A deployment filter and a label colliding with an input column.
    other = LoggedSource.model_validate({"logged": {"since": "30d", "deployment": "elsewhere"}})
    assert (
        read_logged(other, model="fraud", label="y", home=home, database=registry.database).report[
            "logged_rows"
        ]
        == 0
    )
    bounded = LoggedSource.model_validate({"logged": {"since": "30d", "max_events": 10}})
    with pytest.raises(InvalidArgument, match="more than max_events=10 predictions of fraud"):
        read_logged(bounded, model="fraud", label="y", home=home, database=registry.database)
    with pytest.raises(InvalidArgument, match="named like the label 'a'"):
        read_logged(source, model="fraud", label="a", home=home, database=registry.database)
    with pytest.raises(InvalidArgument, match="SHIPYARD_HOME"):
        read_logged(source, model="fraud", label="y", home=None, database=registry.database)


def test_a_run_trains_on_logged_predictions_with_feedback(setup: Any, registry: Registry) -> None:
    runner, home = setup
    _log_traffic(home, registry, labelled=300, unlabelled=40)
    _register(runner, [{"logged": {"since": "7d"}}])
    run = runner.run("p")
    assert run.status is RunStatus.SUCCEEDED, run.error
    (report,) = run.result["sources"]
    assert report["rows"] == 300 and report["without_feedback"] == 40
    assert run.result["train_rows"] + run.result["holdout_rows"] == 300
    assert run.result["data"]["rows"] == run.result["train_rows"]
    assert '"without_feedback": 40' in Path(run.log_path or "").read_text()
    version = registry.get_version("fraud", 2)
    assert version.lineage.run_id == str(run.id)
    assert version.lineage.data is not None
    assert version.lineage.data.sha256 == run.result["data"]["sha256"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_logged_source_failures_fail_the_run(
    setup: Any, registry: Registry, database_url: str, blob_root: Path, tmp_path: Path
) -> None:
    runner, home = setup
    _log_traffic(home, registry, labelled=0, unlabelled=20)
    _register(runner, [{"logged": {"since": "30d"}}])
    run = runner.run("p")
    assert run.status is RunStatus.FAILED
    assert "the training data is empty" in (run.error or "")
    assert "'without_feedback': 20" in (run.error or "")
    _assert_untouched(runner)
    homeless = Runner(
        runner.pipelines,
        StoreSpec(database_url, str(blob_root), "x"),
        tmp_path / "runs2",
        cwd=tmp_path / "project",
    )
    run = homeless.run("p")
    assert run.status is RunStatus.FAILED and "SHIPYARD_HOME" in (run.error or "")
    _assert_untouched(runner)


# -- SQL on PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def warehouse(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database with table `training` (120 rows) and a function that
    writes; yields its URL, and PASSWORD is in PASSWORD_ENV (the test server trusts any)."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    engine = create_engine(
        make_url(postgres_url).set(drivername="postgresql+psycopg"), poolclass=NullPool
    )
    data = _data(120, 5)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE training (a float8, b float8, c numeric, label int)"))
        connection.execute(
            text("INSERT INTO training VALUES (:a, :b, :c, :label)"),
            [{str(k): v for k, v in row.items()} for row in data.to_dict("records")],
        )
        connection.execute(text("CREATE TABLE audit (n int)"))
        connection.execute(
            text(
                "CREATE FUNCTION scribble() RETURNS int LANGUAGE sql AS "
                "'INSERT INTO audit VALUES (1) RETURNING n'"
            )
        )
    engine.dispose()
    yield make_url(postgres_url).render_as_string(hide_password=False)


def _count(url: str, table: str) -> int:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def _sql(url: str, query: str, **options: Any) -> SqlSource:
    given = {"sql": query, "database": url, "password_env": PASSWORD_ENV, **options}
    return SqlSource.model_validate(given)


@pytest.mark.postgres
def test_sql_on_postgres_reads_the_query_result(warehouse: str) -> None:
    read = read_sql(_sql(warehouse, "-- the training set\nSELECT * FROM training ORDER BY a"))
    assert list(read.data.columns) == ["a", "b", "c", "label"]
    assert len(read.data) == 120 and read.data["c"].dtype == np.float64  # numeric as float
    assert read.data["a"].is_monotonic_increasing
    assert read.report == {"kind": "sql", "database": warehouse, "rows": 120}
    assert len(read_sql(_sql(warehouse, "SELECT * FROM training", max_rows=120)).data) == 120
    with pytest.raises(InvalidArgument, match="more than max_rows=119"):
        read_sql(_sql(warehouse, "SELECT * FROM training", max_rows=119))


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT scribble()", "cannot execute INSERT in a read-only transaction"),
        ("DELETE FROM training", "must be one SELECT query, not 'DELETE'"),
        ("SELECT 1; COMMIT; DROP TABLE training", "cannot insert multiple commands"),
        (
            "WITH gone AS (DELETE FROM training RETURNING a) SELECT * FROM gone",
            "must not contain data-modifying statements",
        ),
        ("SELECT nope FROM training", 'column "nope" does not exist'),
        ("SELECT * FROM missing_table", 'relation "missing_table" does not exist'),
    ],
)
def test_sql_on_postgres_refuses_writes_and_reports_bad_queries(
    warehouse: str, query: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        read_sql(_sql(warehouse, query))
    assert PASSWORD not in caught.value.message
    assert _count(warehouse, "training") == 120 and _count(warehouse, "audit") == 0


def test_an_unreachable_database_is_unavailable_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with pytest.raises(Unavailable, match="cannot reach the SQL source database") as caught:
        read_sql(_sql("postgresql://reader@127.0.0.1:1/warehouse", "SELECT 1"))
    assert "postgresql://reader@127.0.0.1:1/warehouse" in caught.value.message
    assert PASSWORD not in caught.value.message


def test_the_password_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _sql("postgresql://reader@db.internal/warehouse", "SELECT 1")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert engine_url(source).password == PASSWORD
    assert PASSWORD not in json.dumps(source.model_dump(mode="json"))
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(FailedPrecondition, match=f"environment variable {PASSWORD_ENV}, which"):
        read_sql(source)
    bare = SqlSource.model_validate({"sql": "SELECT 1", "database": "postgresql://r@h/w"})
    assert engine_url(bare).password is None  # libpq's PGPASSWORD / ~/.pgpass then apply


# -- SQL on DuckDB ---------------------------------------------------------------------------


@pytest.fixture
def duck_file(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.register("frame", _data(50, 6))
        connection.execute("CREATE TABLE training AS SELECT * FROM frame")
    return path


def _duck_rows(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as connection:
        row = connection.execute("SELECT count(*) FROM training").fetchone()
    assert row is not None
    return int(row[0])


def test_sql_on_duckdb_reads_the_query_result(duck_file: Path) -> None:
    source = SqlSource.model_validate(
        {"sql": "SELECT a, b, c, label FROM training WHERE a > 0", "duckdb": str(duck_file)}
    )
    read = read_sql(source)
    assert list(read.data.columns) == ["a", "b", "c", "label"]
    assert len(read.data) == int((_data(50, 6)["a"] > 0).sum())
    assert read.report["database"] == f"duckdb:{duck_file}"
    bounded = source.model_copy(update={"max_rows": 3})
    with pytest.raises(InvalidArgument, match="more than max_rows=3"):
        read_sql(bounded)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM training", "must be one SELECT query, got 1 statement(s) of type DELETE"),
        ("SELECT 1; DROP TABLE training", "must be one SELECT query, got 2 statement(s)"),
        ("COPY training TO 'out.csv'", "of type COPY"),
        ("SELECT nope FROM training", "failed: Binder Error"),
        ("SELEC 1", "failed: Parser Error"),
    ],
)
def test_sql_on_duckdb_refuses_writes_and_reports_bad_queries(
    duck_file: Path, query: str, message: str
) -> None:
    source = SqlSource.model_validate({"sql": query, "duckdb": str(duck_file)})
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_sql(source)
    assert _duck_rows(duck_file) == 50


def test_a_missing_duckdb_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    source = SqlSource.model_validate({"sql": "SELECT 1", "duckdb": str(missing)})
    with pytest.raises(InvalidArgument, match=f"the SQL source on duckdb:{missing} failed"):
        read_sql(source)
    assert not missing.exists()


# -- runs on SQL sources ---------------------------------------------------------------------


@pytest.mark.postgres
def test_a_run_trains_on_a_sql_query_and_never_records_the_password(
    setup: Any, warehouse: str, duck_file: Path, registry: Registry
) -> None:
    runner, _ = setup
    _register(
        runner,
        [
            {
                "sql": "SELECT a, b, c::float8 AS c, label FROM training",
                "database": warehouse,
                "password_env": PASSWORD_ENV,
            },
            {"sql": "SELECT * FROM training", "duckdb": str(duck_file)},
        ],
    )
    run = runner.run("p")
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [r["rows"] for r in run.result["sources"]] == [120, 50]
    assert run.result["train_rows"] + run.result["holdout_rows"] == 170
    _assert_no_password(runner, run)
    # The stored config names the variable; the password itself is nowhere in it.
    pipeline = runner.pipelines.get("p")
    assert PASSWORD not in json.dumps(pipeline.config.to_json())
    assert pipeline.config.to_json()["sources"][0]["password_env"] == PASSWORD_ENV


def _assert_no_password(runner: Runner, run: Any) -> None:
    recorded = json.dumps([run.result, run.error, run.trigger_details])
    assert PASSWORD not in recorded
    assert PASSWORD not in Path(run.log_path or "").read_text()
    ledger = json.dumps([e.details for e in runner.registry.history("fraud")], default=str)
    assert PASSWORD not in ledger


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("url", "query", "message"),
    [
        (
            "postgresql://reader@127.0.0.1:1/warehouse",
            "SELECT 1",
            "cannot reach the SQL source database postgresql://reader@127.0.0.1:1/warehouse",
        ),
        ("warehouse", "SELECT nope FROM training", 'column "nope" does not exist'),
        ("warehouse", "SELECT scribble()", "read-only transaction"),
    ],
)
def test_a_failing_sql_source_fails_the_run_and_changes_nothing(
    setup: Any,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    query: str,
    message: str,
) -> None:
    runner, _ = setup
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    database = request.getfixturevalue("warehouse") if url == "warehouse" else url
    _register(runner, [{"sql": query, "database": database, "password_env": PASSWORD_ENV}])
    run = runner.run("p")
    assert run.status is RunStatus.FAILED and message in (run.error or ""), run.error
    _assert_no_password(runner, run)
    _assert_untouched(runner)
    if url == "warehouse":
        assert _count(database, "training") == 120 and _count(database, "audit") == 0


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"table": "x"}, "a source is {path: ...}, {logged: {since: ...}} or {sql: ...}"),
        ({"logged": {"since": "soon"}}, "cannot read 'soon' as a period"),
        ({"logged": {"since": "30d", "label": "y"}}, "Extra inputs are not permitted"),
        ({"sql": "SELECT 1"}, "either a database URL or a duckdb file"),
        (
            {"sql": "SELECT 1", "database": "postgresql://h/db", "duckdb": "y"},
            "either a database URL or",
        ),
        ({"sql": "SELECT 1", "database": "sqlite:///x.db"}, "is a postgresql:// URL"),
        ({"sql": "SELECT 1", "database": "::nonsense"}, "not a valid SQLAlchemy URL"),
        ({"sql": "SELECT 1", "database": f"postgresql://r:{PASSWORD}@h/w"}, "holds a password"),
        (
            {"sql": "SELECT 1", "database": f"postgresql://r@h/w?password={PASSWORD}"},
            "password_env",
        ),
        ({"sql": "SELECT 1", "duckdb": "x", "password_env": "PW"}, "goes with a database URL"),
        ({"sql": "SELECT 1", "database": "postgresql://r@h/w", "password_env": "1-x"}, "pattern"),
        ({"sql": "SELECT 1", "duckdb": "x", "max_rows": 0}, "max_rows"),
        ({"sql": "", "duckdb": "x"}, "sources.0.sql.sql"),
    ],
)
def test_bad_sources_are_refused_naming_the_field(source: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match="'sources.0") as caught:
        parse_config({"label": "y", "sources": [source]})
    assert message in caught.value.message


def test_relative_file_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    config = parse_config(
        {
            "label": "y",
            "sources": [
                {"path": "data/train.parquet"},
                {"sql": "SELECT 1", "duckdb": "w.duckdb"},
                {"sql": "SELECT 1", "database": "postgresql://u@h/db", "password_env": "PW"},
                {"logged": {"since": "12h"}},
            ],
        }
    )
    resolved = config.resolved(tmp_path).to_json()["sources"]
    assert resolved[0]["path"] == str(tmp_path / "data" / "train.parquet")
    assert resolved[1]["duckdb"] == str(tmp_path / "w.duckdb")
    assert resolved[2]["database"] == "postgresql://u@h/db" and resolved[2]["password_env"] == "PW"
    assert resolved[3] == {"logged": {"since": "12h", "deployment": None, "max_events": 5_000_000}}
    assert parse_config(config.to_json()) == config  # what is stored reads back the same
