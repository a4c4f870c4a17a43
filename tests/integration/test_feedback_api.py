"""POST /api/v1/feedback built in-process on SQLite and PostgreSQL: a retry of the same
values is answered 200 with the items counted as unchanged, a different value is a 409
naming the id with nothing of the call stored, and the result schema only grew."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import select

from shipyard.auth.keys import KeyStore
from shipyard.registry.service import Registry
from shipyard.storage.deployments_table import FeedbackRow
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
    assert r.json() == {"accepted": 2, "unmatched": ["a", "b"], "unchanged": 0}
    before = _stored(registry)
    assert before == {"a": (1, first_key.principal), "b": ("cat", first_key.principal)}

    r = _post(app, second, [*items, {"request_id": "c", "value": 1.0}])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "unmatched": ["a", "b", "c"], "unchanged": 2}
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
    assert set(schema["properties"]) == {"accepted", "unmatched", "unchanged"}
    assert set(schema["required"]) == {"accepted", "unmatched"}  # old clients parse it as before
