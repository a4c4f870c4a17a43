"""The management API built in-process (`create_app` over a Registry) on SQLite and
PostgreSQL: the audit trail records failed calls too (500 included) without the error's
details, and an internal error's message never reaches the caller."""

from __future__ import annotations

import anyio
import httpx
from fastapi import FastAPI

from shipyard.auth.audit import AuditLog
from shipyard.auth.keys import KeyStore
from shipyard.registry.service import Registry
from shipyard.transports.api.app import create_app
from shipyard.transports.api.context import ApiOptions


def _call(app: FastAPI, method: str, path: str, token: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        # raise_app_exceptions=False: the app's own 500 response is what a client would see.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"authorization": f"Bearer {token}"}
            return await client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    return anyio.run(go)


def test_internal_errors_are_audited_and_not_shown(registry: Registry) -> None:
    keys = KeyStore.for_registry(registry)
    _, token = keys.create("ops", ["admin"])
    app = create_app(registry, ApiOptions(max_body_bytes=1024), key_store=keys)

    @app.post("/api/v1/explode")
    def explode() -> None:
        raise RuntimeError("database password is hunter2")

    r = _call(app, "POST", "/api/v1/explode", token)
    assert r.status_code == 500 and "hunter2" not in r.text
    assert r.json() == {"error": "internal error; see the server log for this request id"}
    r = _call(app, "POST", "/api/v1/feedback", token, content=b"[" + b" " * 2000 + b"]")
    assert r.status_code == 413 and r.json()["error"].startswith("request body is over")
    entries = AuditLog(registry.database).query()
    assert [(e.action, e.status) for e in entries] == [
        ("POST /api/v1/feedback", 413),
        ("POST /api/v1/explode", 500),
    ]
    assert all("hunter2" not in repr(e) and token not in repr(e) for e in entries)
