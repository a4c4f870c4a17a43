"""`shipyard feedback FILE` on SQLite and PostgreSQL: CSV, Parquet and JSON Lines files go
through the FeedbackStore in batches; a re-run is a no-op, a conflict or bad row exits with
its code and a message naming the rows, and stored data stays as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner, Result

from shipyard.cli import app
from shipyard.core.errors import Unavailable
from shipyard.monitoring.eventlog.privacy import load_or_create_key
from shipyard.monitoring.feedback import Feedback, FeedbackOutcome, FeedbackStore, key_digest
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow


class Env:
    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url

    def run(self, *args: str) -> Result:
        env = {
            "SHIPYARD_HOME": str(self.root / "home"),
            "SHIPYARD_DATABASE_URL": self.database_url,
            "SHIPYARD_ACTOR": "labeller",
        }
        return CliRunner().invoke(app, ["feedback", *args], env=env)

    def stored(self) -> dict[str, Any]:
        with Database(self.database_url) as db, db.read() as session:
            rows = session.execute(select(FeedbackRow.request_id, FeedbackRow.value))
            return {request_id: value for request_id, value in rows}

    def log_prediction(self, request_id: str, key: str | None = None) -> None:
        digest = key_digest(load_or_create_key(self.root / "home"), key) if key else None
        row = {"request_id": request_id, "deployment": "d", "revision": 1, "model": "m",
               "version": 1, "at": utcnow(), "output": 1, "key": digest}  # fmt: skip
        with Database(self.database_url) as db, db.write() as session:
            session.execute(insert(PredictionRow), [row])

    def csv(self, text: str, name: str = "labels.csv") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def jsonl(self, records: list[dict[str, Any]], name: str = "labels.jsonl") -> Path:
        path = self.root / name
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        return path


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[Env]:
    yield Env(tmp_path, database_url)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def fails(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())  # one line, whatever the terminal width


def test_csv_is_stored_with_ids_as_written_and_a_rerun_changes_nothing(env: Env) -> None:
    env.log_prediction("0012")
    path = env.csv("request_id,label\n0012,1\nabc,0\nx-3,1\n")
    assert ok(env.run(str(path))).strip() == (
        "labels.csv: 3 rows: 3 stored, 0 unchanged, 2 without a logged prediction yet "
        "('abc', 'x-3')"
    )
    assert env.stored() == {"0012": 1, "abc": 0, "x-3": 1}  # "0012", not the number 12
    with Database(env.database_url) as db, db.read() as session:
        assert set(session.scalars(select(FeedbackRow.actor))) == {"labeller"}
    again = ok(env.run(str(path), "--batch", "2"))
    assert "3 rows: 0 stored, 3 unchanged, 2 without a logged prediction yet" in again
    assert env.stored() == {"0012": 1, "abc": 0, "x-3": 1}


def test_parquet_keeps_value_types(env: Env) -> None:
    path = env.root / "labels.parquet"
    frame = pd.DataFrame({"rid": ["a", "b", "c"], "truth": [0.5, 1.25, 3.0], "other": [1, 2, 3]})
    frame.to_parquet(path)
    out = ok(env.run(str(path), "--id-column", "rid", "--value-column", "truth"))
    assert "labels.parquet: 3 rows: 3 stored, 0 unchanged, 3 without" in out
    assert env.stored() == {"a": 0.5, "b": 1.25, "c": 3.0}
    pd.DataFrame({"rid": ["a", "d"], "truth": [True, False]}).to_parquet(path)
    out = fails(env.run(str(path), "--id-column", "rid", "--value-column", "truth"), 5)
    assert "'a' was already given with a different value (row 1)" in out
    assert env.stored() == {"a": 0.5, "b": 1.25, "c": 3.0}


def test_jsonl_keeps_bools_strings_and_numeric_ids(env: Env) -> None:
    path = env.jsonl([{"request_id": "007", "label": True}, {"request_id": 42, "label": "cat"},
                      {"request_id": "r", "label": 2, "extra": [1]}])  # fmt: skip
    assert "3 rows: 3 stored" in ok(env.run(str(path)))
    stored = env.stored()
    assert stored == {"007": True, "42": "cat", "r": 2} and type(stored["007"]) is bool


def test_the_value_column_defaults_to_label_then_value(env: Env) -> None:
    both = env.csv("request_id,value,label\na,1,cat\n", "both.csv")
    ok(env.run(str(both)))
    assert env.stored() == {"a": "cat"}
    only_value = env.csv("request_id,value\nb,1\n", "value.csv")
    ok(env.run(str(only_value)))
    assert env.stored() == {"a": "cat", "b": 1}


def test_a_conflict_keeps_earlier_batches_and_stores_nothing_of_its_own(env: Env) -> None:
    ok(env.run(str(env.csv("request_id,label\nr4,0\n", "first.csv"))))
    rows = "".join(f"r{i},1\n" for i in range(1, 8))  # r4 is given 0 above: row 4
    out = fails(env.run(str(env.csv(f"request_id,label\n{rows}")), "--batch", "3"), 5)
    assert out == (
        "error (conflict): labels.csv: feedback for request id 'r4' was already given with a "
        "different value (row 4); rows 1-3 stored; nothing from rows 4-6 stored"
    )
    assert env.stored() == {"r1": 1, "r2": 1, "r3": 1, "r4": 0}


def test_a_conflict_names_every_conflicting_row(env: Env) -> None:
    ok(env.run(str(env.csv("request_id,label\nr2,0\nr3,0\n", "first.csv"))))
    out = fails(env.run(str(env.csv("request_id,label\nr1,1\nr2,1\nr3,1\n"))), 5)
    assert "request id 'r2', 'r3' was already given with a different value (rows 2, 3)" in out
    assert env.stored() == {"r2": 0, "r3": 0}


def test_a_database_failure_mid_file_says_what_is_stored(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = FeedbackStore.add
    calls: list[int] = []

    def down_on_second(self: FeedbackStore, items: list[Feedback], actor: str) -> FeedbackOutcome:
        calls.append(len(items))
        if len(calls) == 2:
            raise Unavailable("database is down")
        return real(self, items, actor)

    monkeypatch.setattr(FeedbackStore, "add", down_on_second)
    rows = "".join(f"r{i},1\n" for i in range(1, 6))
    out = fails(env.run(str(env.csv(f"request_id,label\n{rows}")), "--batch", "2"), 11)
    assert out == (
        "error (unavailable): labels.csv: database is down; rows 1-2 stored; "
        "nothing from rows 3-4 stored"
    )
    assert env.stored() == {"r1": 1, "r2": 1}


def test_a_conflict_in_the_first_batch_stores_nothing(env: Env) -> None:
    ok(env.run(str(env.csv("request_id,label\nr2,0\n", "first.csv"))))
    out = fails(env.run(str(env.csv("request_id,label\nr1,1\nr2,1\n"))), 5)
    assert out.endswith("'r2' was already given with a different value (row 2); "
                        "nothing from rows 1-2 stored")  # fmt: skip
    assert env.stored() == {"r2": 0}


def test_repeated_ids_in_the_file_are_refused_before_anything_is_stored(env: Env) -> None:
    path = env.csv("request_id,label\na,1\nb,1\na,1\nc,0\nb,0\n")
    out = fails(env.run(str(path), "--batch", "1"), 5)
    assert out == (
        "error (conflict): labels.csv: request ids appear more than once: 'a' in rows 1, 3; "
        "'b' in rows 2, 5; nothing stored"
    )
    assert env.stored() == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--value-column", "truth"],
            "labels.csv: no column 'truth' (columns: 'request_id', 'label')",
        ),
        (["--id-column", "rid"], "labels.csv: no column 'rid' (columns: 'request_id', 'label')"),
    ],  # fmt: skip
)
def test_a_missing_column_is_invalid(env: Env, args: list[str], message: str) -> None:
    out = fails(env.run(str(env.csv("request_id,label\na,1\n")), *args), 3)
    assert out == f"error (invalid_argument): {message}"
    assert env.stored() == {}


def test_a_missing_column_of_an_empty_table_is_invalid(env: Env) -> None:
    out = fails(env.run(str(env.csv("rid,label\n"))), 3)
    assert "labels.csv: no column 'request_id' (columns: 'rid', 'label')" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,1\n,1\n", "row 2: empty request id; nothing stored"),
        ("a,1\nb,\n", "row 2: no value for request id 'b' (empty or NaN); nothing stored"),
        ("a,inf\n", "row 1: value inf of request id 'a' is not a finite number"),
        ("a,1\nb c,1\n", "row 2: request id 'b c' must be 1-128 printable ASCII characters"),
        (f"a,{'x' * 201}\n", "row 1: value of request id 'a' is longer than 200 characters"),
    ],
)
def test_a_bad_row_stores_nothing_of_the_file(env: Env, text: str, message: str) -> None:
    out = fails(env.run(str(env.csv("request_id,label\nok,1\n" + text)), "--batch", "1"), 3)
    row, rest = message.split(": ", 1)
    number = int(row.removeprefix("row ")) + 1  # the "ok" row comes first
    assert f"error (invalid_argument): labels.csv: row {number}: {rest}" in out
    assert env.stored() == {}


def test_bad_jsonl_rows(env: Env) -> None:
    path = env.jsonl([{"request_id": "a", "label": 1}, {"request_id": "b"}])
    assert "row 2: no value for request id 'b'" in fails(env.run(str(path)), 3)
    path = env.jsonl([{"request_id": "a", "label": {"deep": 1}}])
    assert "must be a bool, number or string, not dict" in fails(env.run(str(path)), 3)
    path.write_text('{"request_id": "a", "label": 1}\n[1, 2]\n')
    assert "labels.jsonl: row 2 is not a JSON object" in fails(env.run(str(path)), 3)
    path.write_text('{"request_id": "a", "label": 1}\n{"request_id": "b", \n')
    assert "labels.jsonl: row 2 is not valid JSON" in fails(env.run(str(path)), 3)
    assert env.stored() == {}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.csv", ""),
        ("empty.jsonl", ""),
        ("header.csv", "request_id,label\n"),
        ("blank.jsonl", "\n\n"),
    ],  # fmt: skip
)
def test_an_empty_file_stores_nothing(env: Env, name: str, content: str) -> None:
    path = env.root / name
    path.write_text(content)
    assert ok(env.run(str(path))).strip() == f"{name}: no rows; nothing stored"
    assert env.stored() == {}


def test_files_that_cannot_be_read(env: Env) -> None:
    out = fails(env.run(str(env.csv("a", "labels.txt"))), 3)
    assert "labels.txt: unsupported file type '.txt'; use CSV, Parquet or JSON Lines" in out
    assert "nope.csv: no such file" in fails(env.run(str(env.root / "nope.csv")), 3)
    broken = env.root / "broken.parquet"
    broken.write_bytes(b"not parquet")
    assert "broken.parquet: cannot read" in fails(env.run(str(broken)), 3)


def test_batch_must_be_in_range(env: Env) -> None:
    path = env.csv("request_id,label\na,1\n")
    assert "Invalid value for '--batch'" in fails(env.run(str(path), "--batch", "0"), 2)
    assert env.stored() == {}


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["feedback", "--help"], env={"COLUMNS": "200"})
    out = ok(result)
    for option in ("--id-column", "--value-column", "--batch", "request_id", "1000"):
        assert option in out


def test_rows_by_business_key(env: Env) -> None:
    env.log_prediction("r-1", "1001")
    env.log_prediction("r-2", "1002")
    env.log_prediction("t-1", "7")
    env.log_prediction("t-2", "7")  # a retried request: two predictions carry order 7
    # A Parquet key column with a gap reads as floats: 1001.0 is the order 1001.
    frame = pd.DataFrame({"order": [1001.0, 1002.0, 1003.0], "label": [1, 0, 1]})
    frame.to_parquet(path := env.root / "orders.parquet")
    out = ok(env.run(str(path), "--key-column", "order"))
    assert "3 rows: 2 stored, 0 unchanged" in out, out
    assert "1 keys no logged prediction carries yet, not stored ('1003')" in out, out
    assert env.stored() == {"r-1": 1, "r-2": 0}

    env.log_prediction("r-3", "1003")  # its prediction arrives: the same file again
    out = ok(env.run(str(path), "--key-column", "order"))
    assert "3 rows: 1 stored, 2 unchanged" in out and "keys no logged" not in out, out
    assert env.stored() == {"r-1": 1, "r-2": 0, "r-3": 1}

    ambiguous = env.csv("order,label\n1001,1\n7,1\n")
    out = fails(env.run(str(ambiguous), "--key-column", "order"), 5)
    assert "key '7' names several logged predictions" in out and "(row 2)" in out, out
    repeated = env.csv("order,label\n1001,1\n1001,1\n", "again.csv")
    out = fails(env.run(str(repeated), "--key-column", "order"), 5)
    assert "keys appear more than once: '1001' in rows 1, 2" in out, out
    blank = env.csv("order,label\n1001,1\n,1\n", "blank.csv")
    assert "row 2: empty key; nothing stored" in fails(
        env.run(str(blank), "--key-column", "order"), 3
    )
    assert env.stored() == {"r-1": 1, "r-2": 0, "r-3": 1}
