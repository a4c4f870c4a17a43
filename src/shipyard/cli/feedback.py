"""`shipyard feedback FILE`: ground truth from a CSV, Parquet or JSON Lines file into the
registry database, through the same FeedbackStore (and rules) as `POST /feedback`.

Every row is checked before anything is stored; then rows go in batches, each one stored
whole or not at all. Re-running a file is safe: rows given before with the same value count
as unchanged. On a conflict the batches stored before it stay, and the message says which.
With --key-column the rows name predictions by business key instead of request id; keys no
logged prediction carries yet are not stored, and the summary lists them to send again.
"""

from __future__ import annotations

import getpass
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import pandas as pd
import typer

from shipyard.app.settings import Settings
from shipyard.cli.errors import exits_by_kind
from shipyard.codecs.tables import read_table
from shipyard.core.errors import Conflict, InvalidArgument, ShipyardError
from shipyard.monitoring.eventlog.privacy import load_or_create_key
from shipyard.monitoring.feedback import (
    MAX_BATCH,
    Feedback,
    FeedbackStore,
    Item,
    KeyedFeedback,
    problem,
    shown,
)
from shipyard.storage.database import Database

READABLE = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
VALUE_COLUMNS = ("label", "value")  # tried in this order when --value-column is not given
MISSING = object()  # a JSON Lines record without the field


def install(app: typer.Typer) -> None:
    app.command("feedback")(feedback)


@dataclass
class Columns:
    """The file's column names, its row count and the values of the columns asked for."""

    names: list[str]
    rows: int
    values: dict[str, list[Any]] = field(default_factory=dict)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _jsonl(path: Path, wanted: Sequence[str]) -> Columns:
    records: list[dict[str, Any]] = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"row {len(records) + 1} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise InvalidArgument(f"row {len(records) + 1} is not a JSON object")
        records.append(record)
    names = list(dict.fromkeys(k for r in records for k in r))
    values = {c: [r.get(c, MISSING) for r in records] for c in wanted if c in names}
    return Columns(names, len(records), values)


def _frame(path: Path, id_column: str, wanted: Sequence[str]) -> Columns:
    frame: object
    if path.suffix.lower() == ".csv":
        # Ids as text: "0012" must not become the number 12 and miss its prediction.
        frame = pd.read_csv(path, dtype={id_column: str})
    else:
        frame = read_table(path)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidArgument("the file must have named columns")
    names = [str(c) for c in frame.columns]
    values = {c: frame[c].tolist() for c in wanted if c in names}
    return Columns(names, len(frame), values)


def read_columns(path: Path, id_column: str, wanted: Sequence[str]) -> Columns:
    """The columns of a feedback file, with ids and labels exactly as written."""
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise InvalidArgument(
            f"{path.name}: unsupported file type {suffix!r}; use CSV, Parquet or JSON Lines "
            f"({', '.join(READABLE)})"
        )
    if not path.is_file():
        raise InvalidArgument(f"{path}: no such file")
    if path.stat().st_size == 0:
        return Columns([], 0)
    try:
        if suffix in (".jsonl", ".ndjson"):
            return _jsonl(path, wanted)
        return _frame(path, id_column, wanted)
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"{path.name}: {exc.message.removeprefix(f'{path.name}: ')}"
        ) from None
    except Exception as exc:  # each reader raises its own types; the caller needs one clear line
        raise InvalidArgument(f"{path.name}: cannot read: {_first_line(exc)}") from None


def _absent(raw: Any) -> bool:
    return raw is MISSING or raw is None or raw is pd.NA or (isinstance(raw, float) and raw != raw)


def _name(item: Item) -> str:
    return item.key if isinstance(item, KeyedFeedback) else item.request_id


def _text(raw: Any, what: str) -> str:
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)  # a numeric id column of a Parquet or JSON file
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))  # a numeric key column with gaps reads as floats
    if isinstance(raw, str) or _absent(raw):  # a str here is empty
        raise InvalidArgument(f"empty {what}")
    raise InvalidArgument(f"{what} {raw!r} is not text")


def _request_id(raw: Any) -> str:
    if isinstance(raw, float) and not _absent(raw):  # ids are text; 12.0 was never one
        raise InvalidArgument(f"request id {raw!r} is not text")
    return _text(raw, "request id")


def _item(raw_name: Any, raw_value: Any, by_key: bool) -> Item:
    what = "key" if by_key else "request id"
    name = _text(raw_name, what) if by_key else _request_id(raw_name)
    if _absent(raw_value):  # an empty cell is NaN by the time pandas hands it over
        raise InvalidArgument(f"no value for {what} {name!r} (empty or NaN)")
    item: Item = KeyedFeedback(name, raw_value) if by_key else Feedback(name, raw_value)
    reason = problem(item)
    if reason is not None:
        raise InvalidArgument(reason)
    return item


def _value_column(columns: Columns, asked: str | None) -> str:
    if asked is not None:
        return asked
    return next((c for c in VALUE_COLUMNS if c in columns.names), VALUE_COLUMNS[0])


def _items(columns: Columns, name_column: str, value_column: str, by_key: bool) -> list[Item]:
    for column in (name_column, value_column):
        if column not in columns.values:
            listed = ", ".join(repr(c) for c in columns.names) or "none"
            raise InvalidArgument(f"no column {column!r} (columns: {listed})")
    items = []
    pairs = zip(columns.values[name_column], columns.values[value_column], strict=True)
    for row, (raw_name, raw_value) in enumerate(pairs, start=1):
        try:
            items.append(_item(raw_name, raw_value, by_key))
        except InvalidArgument as exc:
            raise InvalidArgument(f"row {row}: {exc.message}; nothing stored") from None
    _check_repeats(items, "keys" if by_key else "request ids")
    return items


def _check_repeats(items: list[Item], what: str) -> None:
    rows: defaultdict[str, list[int]] = defaultdict(list)
    for row, item in enumerate(items, start=1):
        rows[_name(item)].append(row)
    repeated = [(i, r) for i, r in rows.items() if len(r) > 1]
    if repeated:
        where = "; ".join(f"{i!r} in rows {', '.join(map(str, r))}" for i, r in repeated[:3])
        more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
        raise Conflict(f"{what} appear more than once: {where}{more}; nothing stored")


@dataclass
class Totals:
    stored: int = 0
    unchanged: int = 0
    unmatched: list[str] = field(default_factory=list)
    unmatched_keys: list[str] = field(default_factory=list)


def _send(store: FeedbackStore, items: list[Item], batch: int, actor: str) -> Totals:
    totals = Totals()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        try:
            outcome = store.add(chunk, actor)
        except ShipyardError as exc:  # a conflict, or the database went away mid-file
            raise ShipyardError(_failed(exc, chunk, start), kind=exc.kind) from None
        totals.stored += outcome.stored
        totals.unchanged += outcome.unchanged
        totals.unmatched += outcome.unmatched
        totals.unmatched_keys += outcome.unmatched_keys
    return totals


def _failed(exc: ShipyardError, chunk: list[Item], start: int) -> str:
    """The store's message, the rows it names, and what of the file is stored."""
    row_of = {_name(item): start + n for n, item in enumerate(chunk, start=1)}
    named = [*exc.details.get("request_ids", []), *exc.details.get("keys", [])]
    rows = [str(row_of[i]) for i in named[:3] if i in row_of]
    at = f" ({'row' if len(rows) == 1 else 'rows'} {', '.join(rows)})" if rows else ""
    done = f"{_span(1, start)} stored; " if start else ""
    return f"{exc.message}{at}; {done}nothing from {_span(start + 1, start + len(chunk))} stored"


def _span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}-{last}"


def _summary(path: Path, rows: int, totals: Totals) -> str:
    late = len(totals.unmatched)
    line = (
        f"{path.name}: {rows} rows: {totals.stored} stored, {totals.unchanged} unchanged, "
        f"{late} without a logged prediction yet"
    )
    line = f"{line} ({shown(totals.unmatched)})" if late else line
    keys = totals.unmatched_keys
    if keys:
        line += (
            f"; {len(keys)} keys no logged prediction carries yet, not stored "
            f"({shown(keys)}): send them again later"
        )
    return line


def _actor(settings: Settings) -> str:
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


@exits_by_kind
def feedback(
    file: Annotated[
        Path, typer.Argument(help="CSV, Parquet or JSON Lines file of request ids and labels.")
    ],
    id_column: Annotated[
        str, typer.Option(help="Column of the prediction's request id (X-Request-ID).")
    ] = "request_id",
    value_column: Annotated[
        str | None,
        typer.Option(
            help="Column of the ground truth (default: label, or value if there is no label).",
            show_default=False,
        ),
    ] = None,
    key_column: Annotated[
        str | None,
        typer.Option(
            help="Column of the prediction's business key (the data plane's --feedback-key "
            "input), used instead of --id-column.",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Rows per transaction.")] = 1000,
) -> None:
    """Store ground truth for logged predictions, once per request id.

    Rows given before with the same value count as unchanged: a file can be sent again.
    A different value for a stored id is a conflict (exit 5); every row is checked first.
    With --key-column, rows name predictions by business key; a key several predictions
    carry is a conflict, and keys no prediction carries yet are listed, not stored.
    """
    name_column = key_column or id_column
    wanted = [name_column, *VALUE_COLUMNS, *([value_column] if value_column else [])]
    columns = read_columns(file, name_column, wanted)
    items: list[Item] = []
    if columns.names:  # a zero-byte file has no columns to check, and no rows
        try:
            value = _value_column(columns, value_column)
            items = _items(columns, name_column, value, by_key=key_column is not None)
        except (InvalidArgument, Conflict) as exc:
            raise type(exc)(f"{file.name}: {exc.message}") from None
    if not items:
        print(f"{file.name}: no rows; nothing stored")
        return
    settings = Settings()
    with Database(settings.resolved_database_url, timeout_s=settings.database_timeout_s) as db:
        try:
            hash_key = load_or_create_key(settings.home) if key_column else None
            totals = _send(FeedbackStore(db, hash_key), items, batch, _actor(settings))
        except ShipyardError as exc:
            raise ShipyardError(f"{file.name}: {exc.message}", kind=exc.kind) from None
    print(_summary(file, len(items), totals))
