"""POST /api/v1/feedback built in-process on SQLite and PostgreSQL: a retry of the same
values is answered 200 with the items counted as unchanged, a different value is a 409
naming the id with nothing of the call stored, and the result schema only grew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import insert, select

from shipyard.auth.keys import KeyStore
from shipyard.monitoring.eventlog.privacy import load_or_create_key
from shipyard.monitoring.feedback import key_digest
from shipyard.registry.service import Registry
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow
from shipyard.transports.api.app import create_app
from shipyard.transports.api.context import ApiOptions


def _post(app: FastAPI, token: str, items: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"authorization": f"Bearer {token}"}
            return await client.post("/api/v1/feedback", json=items, headers=headers)

    return anyio.run(go)


def _stored(registry: Registry) -> dict[str, tuple[Any, str]]:
    with registry.database.read() as session:
        rows = session.execute(select(FeedbackRow.request_id, FeedbackRow.value, FeedbackRow.actor))
        return {request_id: (value, actor) for request_id, value, actor in rows}


def test_a_retry_is_unchanged_and_a_different_value_is_a_conflict(registry: Registry) -> None:
    keys = KeyStore.for_registry(registry)
    first_key, first = keys.create("labeller", ["predict"])
    _, second = keys.create("retrier", ["predict"])
    app = create_app(registry, ApiOptions(), key_store=keys)
    items = [{"request_id": "a", "value": 1}, {"request_id": "b", "value": "cat"}]
    r = _post(app, first, items)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 2, "unmatched": ["a", "b"], "unchanged": 0, "unmatched_keys": []
    }  # fmt: skip
    before = _stored(registry)
    assert before == {"a": (1, first_key.principal), "b": ("cat", first_key.principal)}

    r = _post(app, second, [*items, {"request_id": "c", "value": 1.0}])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 1, "unmatched": ["a", "b", "c"], "unchanged": 2, "unmatched_keys": []
    }  # fmt: skip
    assert _stored(registry)["a"] == before["a"]  # the first writer stays on record

    r = _post(app, second, [{"request_id": "d", "value": 0}, {"request_id": "a", "value": True}])
    assert r.status_code == 409
    assert r.json()["error"] == (
        "feedback for request id 'a' was already given with a different value"
    )
    assert set(_stored(registry)) == {"a", "b", "c"}  # "d" of the refused call is not stored


def test_the_result_schema_only_grew(registry: Registry) -> None:
    app = create_app(registry, ApiOptions(), key_store=KeyStore.for_registry(registry))
    schema = app.openapi()["components"]["schemas"]["FeedbackResult"]
    assert set(schema["properties"]) == {"accepted", "unmatched", "unchanged", "unmatched_keys"}
    assert set(schema["required"]) == {"accepted", "unmatched"}  # old clients parse it as before


def test_feedback_by_key_through_the_api(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = load_or_create_key(home)  # the data plane's, shared through HOME
    row = {"request_id": "r-1", "deployment": "d", "revision": 1, "model": "m", "version": 1,
           "at": utcnow(), "output": 1, "key": key_digest(secret, "4711")}  # fmt: skip
    with registry.database.write() as session:
        session.execute(insert(PredictionRow), [row])
    keys = KeyStore.for_registry(registry)
    _, token = keys.create("labeller", ["predict"])
    app = create_app(registry, ApiOptions(home=home), key_store=keys)

    for bad, message in [
        ({"value": 1}, "give either request_id or key"),
        ({"request_id": "r-1", "key": "4711", "value": 1}, "give either request_id or key"),
        ({"key": True, "value": 1}, "key"),  # true is not the key 1
        ({"key": "", "value": 1}, "key"),
    ]:
        r = _post(app, token, [{"key": 4711, "value": 1}, bad])
        assert r.status_code == 422, (bad, r.text)
        assert message in r.text, (bad, r.text)
    assert _stored(registry) == {}

    r = _post(app, token, [{"key": 4711, "value": 1}, {"key": "order-9", "value": 0}])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "unmatched": [], "unchanged": 0,
                        "unmatched_keys": ["order-9"]}  # fmt: skip
    assert {k: v for k, (v, _) in _stored(registry).items()} == {"r-1": 1}

    # A server without HOME cannot digest keys: a clear refusal, nothing stored.
    homeless = create_app(registry, ApiOptions(), key_store=keys)
    r = _post(homeless, token, [{"key": "4711", "value": 1}, {"request_id": "x", "value": 1}])
    assert r.status_code == 400 and "event hashing key" in r.json()["error"], r.text
    assert set(_stored(registry)) == {"r-1"}
