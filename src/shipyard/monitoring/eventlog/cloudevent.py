"""PredictionEvents as CloudEvents 1.0 in structured JSON mode (the KServe payload-logging
convention of protocols.md: type `org.kubeflow.serving.inference.response`, id = request id,
so consumers can join requests, responses and feedback). Built and parsed with the
`cloudevents` SDK, which validates the required attributes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import RESPONSE_EVENT_TYPE, PredictionEvent
from shipyard.monitoring.eventlog.columns import plain

SOURCE_PREFIX = "shipyard/models/"
_FORMAT = JSONFormat()


def to_cloudevent(event: PredictionEvent) -> bytes:
    attributes: dict[str, Any] = {
        "id": event.request_id,
        "source": SOURCE_PREFIX + event.model,
        "type": RESPONSE_EVENT_TYPE,
        "time": event.at,
        "datacontenttype": "application/json",
    }
    if event.subject is not None:
        attributes["subject"] = event.subject
    data = {
        "event_id": event.event_id,
        "deployment": event.deployment,
        "model": event.model,
        "version": event.version,
        "inputs": {k: plain(v) for k, v in event.inputs.items()},
        "outputs": {k: plain(v) for k, v in event.outputs.items()},
        "latency_ms": event.latency_ms,
    }
    return _FORMAT.write(CloudEvent(attributes=attributes, data=data))


def from_cloudevent(body: bytes) -> PredictionEvent:
    """The PredictionEvent a structured-mode CloudEvent written by `to_cloudevent` carries."""
    try:
        ce = _FORMAT.read(CloudEvent, body)
        data = ce.get_data()
        if not isinstance(data, dict):
            raise TypeError("data is not a JSON object")
        at = ce.get_time()
        if not isinstance(at, datetime):
            raise TypeError("time is missing")
        return PredictionEvent(
            event_id=str(data["event_id"]),
            request_id=ce.get_id(),
            deployment=data.get("deployment"),
            model=str(data["model"]),
            version=int(data["version"]),
            at=at,
            inputs=dict(data["inputs"]),
            outputs=dict(data["outputs"]),
            latency_ms=float(data["latency_ms"]),
            subject=ce.get_subject(),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidArgument(f"not a shipyard prediction CloudEvent: {exc}") from exc
