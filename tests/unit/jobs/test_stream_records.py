"""The stream wire format: what counts as a record, and what results and dead letters hold."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.errors import InvalidArgument
from shipyard.jobs.stream.broker import Message, check_name, check_source
from shipyard.jobs.stream.loop import StreamSettings
from shipyard.jobs.stream.records import (
    MAX_BODY_BYTES,
    Malformed,
    dead_letter,
    decode,
    record_id,
    result,
    rows_of_outputs,
)


def _message(body: bytes, deliveries: int = 1) -> Message:
    return Message("7-0", body, deliveries, None)


def test_a_record_is_a_flat_object_and_its_id_is_not_a_feature() -> None:
    record = decode(_message(b'{"id": "a1", "x": 1.5, "s": "FR", "n": null}'), "id")
    assert record.id == "a1"
    assert record.features == {"x": 1.5, "s": "FR", "n": None}


def test_without_an_id_the_message_id_names_the_record() -> None:
    assert decode(_message(b'{"x": 1}'), "id").id == "7-0"
    assert decode(_message(b'{"key": 12, "x": 1}'), "key").id == "12"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty message"),
        (b"{", "not JSON"),
        (b'"text"', "got a string"),
        (b"[1]", "got a array"),
        (b"3", "got a number"),
        (b'{"id": "only"}', "no features"),
        (b'{"x": [1, 2]}', "feature 'x' is a array"),
        (b'{"x": {"y": 1}}', "feature 'x' is a object"),
        (b'{"id": true, "x": 1}', "field 'id' must be a string or integer"),
        (b'{"id": 1.5, "x": 1}', "field 'id' must be a string or integer"),
        (b" " * (MAX_BODY_BYTES + 1), "over the"),
    ],
)
def test_what_is_not_a_record_says_why(body: bytes, words: str) -> None:
    with pytest.raises(Malformed, match=words):
        decode(_message(body), "id")


@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_record_or_malformed(body: bytes) -> None:
    try:
        record = decode(_message(body), "id")
    except Malformed as exc:
        assert str(exc)
    else:
        assert record.features


def test_the_id_of_a_malformed_message_is_kept_when_it_can_be_read() -> None:
    assert record_id(_message(b'{"id": "k", "x": [1]}'), "id") == "k"
    assert record_id(_message(b"{nope"), "id") is None
    assert record_id(_message(b"[1]"), "id") is None


def test_results_carry_the_record_id_message_id_model_and_outputs() -> None:
    record = decode(_message(b'{"id": "a1", "x": 1}'), "id")
    outgoing = result(record, "fraud", 3, {"predict": 1, "proba": [0.25, 0.75]})
    assert (outgoing.key, outgoing.dedupe) == ("a1", "result:7-0")
    assert orjson.loads(outgoing.body) == {
        "id": "a1",
        "message_id": "7-0",
        "model": "fraud",
        "version": 3,
        "outputs": {"predict": 1, "proba": [0.25, 0.75]},
    }


def test_dead_letters_keep_the_body_the_reason_and_the_tries() -> None:
    outgoing = dead_letter(_message(b"\xff{bad", deliveries=4), "exhausted", "why", None)
    letter = orjson.loads(outgoing.body)
    assert letter["kind"] == "exhausted" and letter["reason"] == "why"
    assert letter["deliveries"] == 4 and letter["body"] == "\ufffd{bad"
    assert (outgoing.key, outgoing.dedupe) == ("7-0", "dlq:7-0")


def test_outputs_split_into_plain_rows() -> None:
    outputs = {
        "predict": np.array([1, 0]),
        "proba": np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32),
        "label": np.array([b"yes", "no"], dtype=object),
    }
    rows = rows_of_outputs(outputs)
    assert rows[0]["predict"] == 1 and rows[1]["label"] == "no" and rows[0]["label"] == "yes"
    assert rows[1]["proba"] == pytest.approx([0.8, 0.2])
    assert orjson.dumps(rows)  # plain Python values: JSON as is


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("redis://h:6379/0", "redis"), ("nats://h:4222", "nats"), ("amqp://u:p@h/", "amqp")],
)
def test_sources_name_their_broker(url: str, scheme: str) -> None:
    assert check_source(url) == scheme


@pytest.mark.parametrize("url", ["kafka://h:9092", "h:6379", "", "http://h/"])
def test_unknown_sources_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown broker"):
        check_source(url)


@pytest.mark.parametrize("value", ["", "a b", "x\n", "y" * 201])
def test_names_must_be_printable_without_spaces(value: str) -> None:
    with pytest.raises(InvalidArgument, match="--input"):
        check_name("--input", value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"batch_size": 0}, "--batch-size"),
        ({"batch_size": 10_001}, "--batch-size"),
        ({"max_wait_ms": -1}, "--max-wait-ms"),
        ({"max_deliveries": 0}, "--max-deliveries"),
        ({"id_field": ""}, "--id-field"),
    ],
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        StreamSettings(**kwargs)  # type: ignore[arg-type]
