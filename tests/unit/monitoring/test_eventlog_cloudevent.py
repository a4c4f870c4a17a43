"""PredictionEvents as CloudEvents 1.0, structured JSON mode (KServe payload-logging names)."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from eventlog_support import event

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import RESPONSE_EVENT_TYPE
from shipyard.monitoring.eventlog.cloudevent import from_cloudevent, to_cloudevent


def test_structured_mode_attributes_follow_the_spec() -> None:
    e = event(4)
    body = orjson.loads(to_cloudevent(e))
    assert body["specversion"] == "1.0"
    assert body["id"] == "req-4"  # the request id: consumers join responses and feedback on it
    assert body["type"] == RESPONSE_EVENT_TYPE == "org.kubeflow.serving.inference.response"
    assert body["source"] == "shipyard/models/fraud"
    assert body["datacontenttype"] == "application/json"
    assert body["time"].endswith("Z")
    assert body["data"]["outputs"] == {"label": [0]}
    assert body["data"]["event_id"] == e.event_id
    assert "subject" not in body


def test_round_trip_keeps_every_field() -> None:
    e = replace(event(5), subject="ab12")
    assert from_cloudevent(to_cloudevent(e)) == e


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"specversion": "1.0", "id": "x", "source": "s", "type": "t"}',
        b'{"specversion": "1.0", "id": "x", "source": "s", "type": "t", "time": '
        b'"2026-01-01T00:00:00Z", "data": {"model": "m"}}',
    ],
)
def test_foreign_bodies_refused_with_a_message(body: bytes) -> None:
    with pytest.raises(InvalidArgument, match="not a shipyard prediction CloudEvent"):
        from_cloudevent(body)
