"""The wire format of `shipyard stream`: JSON records in, JSON results and dead letters out.

A record is one JSON object holding one row of named features, e.g.
`{"id": "order-17", "amount": 12.5, "country": "FR"}`. The id field (default `id`, not a
feature) names the record in its result; without one the broker's message id is used.
A result is `{"id", "message_id", "model", "version", "outputs": {name: value}}`; a dead
letter is `{"id", "message_id", "reason", "kind", "deliveries", "body"}` with the original
body as text, so nothing is lost and the reason travels with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from shipyard.jobs.stream.broker import Message, Outgoing

MAX_BODY_BYTES = 1 << 20  # one record is one row: anything bigger is not a record
MAX_FEATURES = 10_000
KEPT_BODY_CHARS = 64 * 1024  # of a dead letter's original body

Scalar = str | int | float | bool | None

MALFORMED = "malformed"  # not a record: bad JSON, not an object, nested values
REJECTED = "rejected"  # a record the model refused (types, missing features, values)
EXHAUSTED = "exhausted"  # failed `max_deliveries` times for reasons other than the above


@dataclass(frozen=True, slots=True)
class Record:
    message: Message
    id: str
    features: dict[str, Scalar]


class Malformed(ValueError):
    """A message that is not a record; the text is the dead letter's reason."""


def decode(message: Message, id_field: str) -> Record:
    """The record in `message`, or Malformed saying why it is not one."""
    body = message.body
    if len(body) > MAX_BODY_BYTES:
        raise Malformed(f"message of {len(body):,} bytes is over the {MAX_BODY_BYTES:,} limit")
    if not body:
        raise Malformed("empty message: no record in it")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Malformed(f"a record is a JSON object of features; got a {_json_type(value)}")
    record_id = _id(value.pop(id_field, None), message.id, id_field)
    if not value:
        raise Malformed("the record has no features")
    if len(value) > MAX_FEATURES:
        raise Malformed(f"{len(value):,} features is over the {MAX_FEATURES:,} limit")
    for name, feature in value.items():
        if isinstance(feature, dict | list):
            raise Malformed(
                f"feature {name!r} is a {_json_type(feature)}; a record is one row of "
                "scalar features"
            )
    return Record(message, record_id, value)


def _id(raw: object, message_id: str, id_field: str) -> str:
    if raw is None:
        return message_id
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        return str(raw)
    raise Malformed(f"field {id_field!r} must be a string or integer; got {raw!r:.60}")


def record_id(message: Message, id_field: str) -> str | None:
    """The id of a message that failed to decode, when one can still be read."""
    try:
        value = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        return None
    raw = value.get(id_field) if isinstance(value, dict) else None
    return str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None


def result(record: Record, model: str, version: int, outputs: Mapping[str, Any]) -> Outgoing:
    """`outputs` maps output names to this record's value (a scalar or a list)."""
    body = {
        "id": record.id,
        "message_id": record.message.id,
        "model": model,
        "version": version,
        "outputs": outputs,
    }
    dumped = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Outgoing(record.id, f"result:{record.message.id}", dumped)


def dead_letter(message: Message, kind: str, reason: str, record_id: str | None) -> Outgoing:
    text = message.body[: KEPT_BODY_CHARS * 4].decode("utf-8", errors="replace")
    body = {
        "id": record_id,
        "message_id": message.id,
        "kind": kind,
        "reason": reason,
        "deliveries": message.deliveries,
        "body": text[:KEPT_BODY_CHARS],
    }
    return Outgoing(record_id or message.id, f"dlq:{message.id}", orjson.dumps(body))


def rows_of_outputs(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-row output values: one `.tolist()` per output, not one per row."""
    columns = {name: _plain(np.asarray(array)) for name, array in outputs.items()}
    count = len(next(iter(columns.values()))) if columns else 0
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def _plain(array: np.ndarray) -> list[Any]:
    values: list[Any] = array.tolist()
    if array.dtype.kind in "OS":  # strings kept by object arrays may be bytes
        return [_text(v) for v in values]
    return values


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
