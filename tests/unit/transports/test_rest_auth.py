"""The REST transport's API key gate (transports/rest/auth.py): the scope of every endpoint,
token extraction, the cache-first check, and authentication before the body is read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest

from shipyard.auth import tokens
from shipyard.auth.cache import TtlCache
from shipyard.auth.keys import ApiKey, KeyStore
from shipyard.auth.scopes import Scope
from shipyard.core.errors import NotFound, PermissionDenied, Unauthenticated
from shipyard.storage.tables import utcnow
from shipyard.transports.rest import auth, routes
from shipyard.transports.rest.app import RestApp, RestOptions
from shipyard.transports.rest.plane import Plane

pytestmark = pytest.mark.anyio


class FakeStore:
    """KeyStore's per-request surface: its cache and `authenticate` (the cache-miss path)."""

    def __init__(self) -> None:
        self._cache: TtlCache[ApiKey] = TtlCache(ttl_s=5.0, stale_s=0.0, max_entries=100)
        self.keys: dict[str, ApiKey] = {}
        self.lookups = 0

    def issue(self, *scopes: Scope, revoked: bool = False) -> str:
        key_id, token = tokens.new_token()
        when = datetime(2026, 1, 1, tzinfo=UTC)
        revoked_at = when if revoked else None
        self.keys[token] = ApiKey(key_id, "k", scopes, when, "t", revoked_at=revoked_at)
        return token

    def authenticate(self, token: str | None) -> ApiKey:
        self.lookups += 1
        _, digest = tokens.parse_token(token)
        key = self.keys.get(cast(str, token))
        if key is None:
            raise Unauthenticated(tokens.INVALID)
        self._cache.put(digest, key, utcnow())
        if key.revoked_at is not None:
            raise Unauthenticated("API key revoked")
        return key

    def cached(self, token: str | None) -> ApiKey | None:
        _, digest = tokens.parse_token(token)
        key = self._cache.get(digest, utcnow())
        if key is not None and key.revoked_at is not None:
            raise Unauthenticated("API key revoked")
        return key


class NothingPlane:
    """Every data plane call answers 404: enough to see whether a request got past the gate."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: object, **kwargs: object) -> Any:
            raise NotFound("nothing here")

        return refuse


def _app(store: FakeStore, **options: Any) -> RestApp:
    guard = auth.Guard(cast(KeyStore, store))
    plane = cast(Plane, NothingPlane())
    return RestApp(plane, options=RestOptions(**options), guard=guard)


def _client(app: RestApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_every_endpoint_has_a_scope() -> None:
    names = {v for k, v in vars(routes).items() if k.isupper() and isinstance(v, str)}
    served = set(_app(FakeStore())._endpoints)
    assert served == {name for name in names if not name.startswith("/")}
    assert served == set(auth.ENDPOINT_SCOPES)
    opened = {name for name, needs in auth.ENDPOINT_SCOPES.items() if not needs}
    assert opened == {routes.LIVE, routes.READY, routes.PING, routes.HEALTH}
    assert auth.endpoint_scopes(metrics_public=True)[routes.METRICS] == auth.OPEN
    assert auth.endpoint_scopes()[routes.METRICS] == auth.READ


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({}, None),
        ({b"authorization": b"Bearer sy_x"}, "sy_x"),
        ({b"authorization": b"bearer  sy_x "}, "sy_x"),
        ({b"x-api-key": b" sy_y "}, "sy_y"),
        ({b"authorization": b"Basic abc", b"x-api-key": b"sy_y"}, "sy_y"),
        ({b"authorization": b"Bearer sy_x", b"x-api-key": b"sy_y"}, "sy_x"),
        ({b"x-api-key": b""}, None),
    ],
)
def test_request_token(headers: dict[bytes, bytes], token: str | None) -> None:
    assert auth.request_token(headers) == token


def test_grpc_metadata_token() -> None:
    from shipyard.transports.grpc.auth import metadata_token

    assert metadata_token(None) is None
    assert metadata_token([("authorization", "Bearer sy_x")]) == "sy_x"
    assert metadata_token([("x-api-key", "sy_y"), ("authorization", "Basic z")]) == "sy_y"
    assert metadata_token([("authorization-bin", b"x")]) is None


# (method, path, scope of the key or None for no key, allowed)
TABLE = [
    ("GET", "/v2/health/live", None, True),
    ("GET", "/v2/health/ready", None, True),
    ("GET", "/ping", None, True),
    ("GET", "/health", None, True),
    ("POST", "/v2/models/m/infer", None, False),
    ("POST", "/v2/models/m/infer", Scope.READ, False),
    ("POST", "/v2/models/m/versions/2/infer", Scope.PREDICT, True),
    ("POST", "/v2/models/m/infer", Scope.ADMIN, True),
    ("POST", "/v1/models/m:predict", Scope.DEPLOY, False),
    ("POST", "/v1/models/m:predict", Scope.PREDICT, True),
    ("POST", "/invocations", Scope.READ, False),
    ("POST", "/invocations", Scope.PREDICT, True),
    ("GET", "/v2", None, False),
    ("GET", "/v2", Scope.READ, True),
    ("GET", "/v2/models/m", Scope.PREDICT, True),
    ("GET", "/v2/models/m/ready", Scope.READ, True),
    ("GET", "/v1/models/m", Scope.DEPLOY, True),  # deploy implies read
    ("GET", "/version", Scope.PREDICT, True),
    ("POST", "/v2/repository/index", Scope.PREDICT, False),
    ("POST", "/v2/repository/index", Scope.READ, True),
    ("POST", "/v2/repository/models/m/load", Scope.DEPLOY, False),
    ("POST", "/v2/repository/models/m/unload", Scope.READ, False),
    ("POST", "/v2/repository/models/m/load", Scope.ADMIN, True),
    ("GET", "/metrics", None, False),
    ("GET", "/metrics", Scope.PREDICT, False),
    ("GET", "/metrics", Scope.READ, True),
    ("GET", "/nowhere", None, False),
    ("GET", "/nowhere", Scope.PREDICT, True),  # then 404
]


@pytest.mark.parametrize(("method", "path", "scope", "allowed"), TABLE)
async def test_scope_per_route(method: str, path: str, scope: Scope | None, allowed: bool) -> None:
    store = FakeStore()
    headers = {} if scope is None else {"authorization": f"Bearer {store.issue(scope)}"}
    async with _client(_app(store)) as c:
        r = await c.request(method, path, headers=headers, json={})
    if allowed:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == (401 if scope is None else 403), r.text
        assert "error" in r.json()


async def test_metrics_public() -> None:
    async with _client(_app(FakeStore(), metrics_public=True)) as c:
        assert (await c.get("/metrics")).status_code not in (401, 403)


async def test_same_message_for_every_bad_token() -> None:
    store = FakeStore()
    good = store.issue(Scope.PREDICT)
    other = FakeStore().issue(Scope.PREDICT)
    bad = ["nope", good[:-1], good + "x", good[:16] + other[16:], other]
    async with _client(_app(store)) as c:
        missing = await c.post("/invocations", json={})
        assert missing.status_code == 401 and missing.json() == {"error": tokens.MISSING}
        for token in bad:
            r = await c.post("/invocations", json={}, headers={"x-api-key": token})
            assert r.status_code == 401 and r.json() == {"error": tokens.INVALID}, token


async def test_cache_hits_need_no_thread_and_no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore()
    token = store.issue(Scope.PREDICT)
    threads = 0
    real = asyncio.to_thread

    async def counting(function: Any, *args: Any) -> Any:
        nonlocal threads
        threads += 1
        return await real(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    guard = auth.Guard(cast(KeyStore, store))
    for _ in range(5):
        key = await guard.check(token, auth.PREDICT)
        assert key.principal.startswith("key:")
    assert threads == 1 and store.lookups == 1
    with pytest.raises(PermissionDenied):
        await guard.check(token, auth.READ)
    assert threads == 1


async def test_cached_revoked_key_is_refused() -> None:
    store = FakeStore()
    token = store.issue(Scope.PREDICT, revoked=True)
    guard = auth.Guard(cast(KeyStore, store))
    for _ in range(2):  # the miss caches the revoked key; the hit refuses it too
        with pytest.raises(Unauthenticated, match="revoked"):
            await guard.check(token, auth.PREDICT)
    assert store.lookups == 1


async def test_unauthenticated_requests_never_read_the_body() -> None:
    app = _app(FakeStore())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/m/infer",
        "headers": [(b"content-length", b"1000000")],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 401
