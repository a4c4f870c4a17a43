"""The web UI's session endpoints and CSRF check, and its static files, on the management API
app in process: cookie attributes (Secure only over https), sign-in refusals, cookie requests
without the CSRF token refused and audited, Bearer requests unaffected, sign-out."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from shipyard.auth.audit import AuditLog
from shipyard.auth.keys import KeyStore
from shipyard.registry.service import Registry
from shipyard.storage.tables import utcnow
from shipyard.transports.api.app import create_app
from shipyard.transports.ui import assets

ROLLBACK = "/api/v1/deployments/nope/rollback"  # passes auth, then 404: no side effect


@pytest.fixture
def keys(registry: Registry) -> KeyStore:
    return KeyStore.for_registry(registry)


class Client:
    """A browser-like client of the app in process: it keeps the cookies it is given."""

    def __init__(self, app: FastAPI, base_url: str = "http://testserver") -> None:
        self.app = app
        self.base_url = base_url
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url=self.base_url, cookies=self.cookies
            ) as client:
                response = await client.request(method, path, **kwargs)
                self.cookies = httpx.Cookies(client.cookies)
                return response

        return anyio.run(go)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def client(registry: Registry, keys: KeyStore) -> Client:
    return Client(create_app(registry, key_store=keys))


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    headers = response.headers.get_list("set-cookie")
    return {h.split("=", 1)[0]: h for h in headers}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_sign_in_sets_strict_cookies_secure_over_https(
    registry: Registry, keys: KeyStore, scheme: str
) -> None:
    key, token = keys.create("ui", ["deploy"])
    c = Client(create_app(registry, key_store=keys), f"{scheme}://testserver")
    r = c.post("/api/v1/session", json={"key": token})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": key.id, "name": "ui", "principal": f"key:{key.id}",
        "scopes": ["deploy"], "expires_at": None,
    }  # fmt: skip
    assert token not in r.text
    cookies = _set_cookies(r)
    session, csrf = cookies["shipyard_session"], cookies["shipyard_csrf"]
    assert "HttpOnly" in session and "HttpOnly" not in csrf
    for header in (session, csrf):
        assert "SameSite=strict" in header and "Path=/" in header
        assert ("Secure" in header) is (scheme == "https")
    assert re.fullmatch(r"shipyard_csrf=[A-Za-z0-9_-]{43}", csrf.split(";")[0])
    who = c.get("/api/v1/session")
    assert who.status_code == 200 and who.json()["id"] == key.id


def test_sign_in_refusals_set_no_cookie(client: Client, keys: KeyStore) -> None:
    _, predict = keys.create("app", ["predict"])
    revoked, revoked_token = keys.create("old", ["read"])
    keys.revoke(revoked.id)
    _, read = keys.create("reader", ["read"])
    cases: list[tuple[dict[str, Any], int | None, str]] = [
        ({"json": {"key": "sy_000000000000_" + "x" * 43}}, 401, "invalid API key"),
        ({"json": {"key": predict}}, 403, "this key lacks the 'read' scope"),
        ({"json": {"key": revoked_token}}, 401, "API key revoked"),
        ({"json": {"key": read, "extra": 1}}, 422, "extra"),
        ({"json": {}}, 422, "key"),
        ({"content": f'{{"key": "{read}"}}', "headers": {"content-type": "text/plain"}}, None, ""),
    ]
    for kwargs, status, message in cases:
        r = client.post("/api/v1/session", **kwargs)
        expected = {status} if status else {415, 422}
        assert r.status_code in expected, r.text
        assert message in r.json()["error"]
        assert "set-cookie" not in r.headers
    assert client.get("/api/v1/session").status_code == 401


def test_cookie_requests_need_the_csrf_token_and_bearer_ones_do_not(
    client: Client, keys: KeyStore, registry: Registry
) -> None:
    key, token = keys.create("ui", ["deploy"])
    assert client.post("/api/v1/session", json={"key": token}).status_code == 200
    csrf = client.cookies["shipyard_csrf"]
    refused = {"error": "CSRF token missing or wrong"}
    for headers in ({}, {"x-csrf-token": "forged"}, {"x-csrf-token": csrf[:-1]}):
        r = client.post(ROLLBACK, json={}, headers=headers)
        assert (r.status_code, r.json()) == (403, refused)
    r = client.put(
        "/api/v1/models/fraud/aliases/production", json={"version": 1}, headers={"x-csrf-token": ""}
    )
    assert (r.status_code, r.json()) == (403, refused)
    # Reading needs no token; with the token the request passes authentication (then 404).
    assert client.get("/api/v1/deployments").status_code == 200
    r = client.post(ROLLBACK, json={}, headers={"x-csrf-token": csrf})
    assert r.status_code == 404, r.text
    # A Bearer header is not a cookie: no CSRF token needed, and it wins over the cookie.
    _, reader = keys.create("reader", ["read"])
    r = client.post(ROLLBACK, json={}, headers={"authorization": f"Bearer {reader}"})
    assert (r.status_code, r.json()["error"]) == (403, "this key lacks the 'deploy' scope")
    audit = AuditLog(registry.database).query(status=403, actor=key.principal)
    assert [e.target for e in audit].count(ROLLBACK) == 3
    assert all(e.actor == f"{key.principal} (ui)" for e in audit)


def test_sign_out_needs_the_token_but_not_a_valid_key(client: Client, keys: KeyStore) -> None:
    assert client.delete("/api/v1/session").status_code == 204  # no session: nothing to do
    key, token = keys.create("ui", ["read"], expires_at=utcnow() + timedelta(days=1))
    r = client.post("/api/v1/session", json={"key": token})
    assert r.json()["expires_at"] is not None
    csrf = client.cookies["shipyard_csrf"]
    r = client.delete("/api/v1/session", headers={"x-csrf-token": "forged"})
    assert r.status_code == 403
    assert client.get("/api/v1/session").status_code == 200  # still signed in
    keys.revoke(key.id)
    assert client.get("/api/v1/session").json() == {"error": "API key revoked"}
    r = client.delete("/api/v1/session", headers={"x-csrf-token": csrf})
    assert r.status_code == 204
    cleared = _set_cookies(r)
    assert set(cleared) == {"shipyard_session", "shipyard_csrf"}
    assert all("Max-Age=0" in header for header in cleared.values())
    assert "shipyard_session" not in client.cookies
    assert client.get("/api/v1/session").json() == {"error": "missing API key"}


def test_the_page_and_its_files_are_served_from_the_package_only(client: Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    referenced = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text)
    assert len(referenced) == 4, referenced  # uPlot's script and styles, ours, the app
    for path in referenced:
        assert client.get(path).status_code == 200, path
    modules = ["/ui/js/app.js"]
    for path in modules:  # grows while it is walked: every module the app imports
        r = client.get(path)
        assert r.status_code == 200, path
        for imported in re.findall(r'from "\./([a-z]+\.js)"', r.text):
            if f"/ui/js/{imported}" not in modules:
                modules.append(f"/ui/js/{imported}")
    assert len(modules) == 8, modules  # every module the app imports is served
    assert client.get("/ui/js/app.js").headers["content-type"].startswith("text/javascript")
    assert "MIT" in client.get("/ui/vendor/uplot/LICENSE").text
    for path in ("/ui/nope.js", "/ui/%2e%2e/assets.py", "/ui/..%2fassets.py", "/ui/js"):
        assert client.get(path).status_code == 404, path
    # Nothing in the shipped files points at another host (no CDN, no fonts, no beacons).
    for name, content in assets.files().items():
        hosts = set(re.findall(rb"https?://([A-Za-z0-9.-]+)", content))
        assert hosts <= {b"github.com"}, (name, hosts)  # only uPlot's notice
        if name.endswith(".js"):
            assert b"innerHTML" not in content or name.startswith("vendor/"), name


def test_an_expired_key_ends_the_session(registry: Registry) -> None:
    now = [utcnow()]
    keys = KeyStore(registry.database, clock=lambda: now[0], cache_ttl_s=0)
    _, token = keys.create("short", ["read"], expires_at=now[0] + timedelta(hours=1))
    client = Client(create_app(registry, key_store=keys))
    assert client.post("/api/v1/session", json={"key": token}).status_code == 200
    assert client.get("/api/v1/deployments").status_code == 200
    now[0] += timedelta(hours=2)
    for path in ("/api/v1/session", "/api/v1/deployments"):
        r = client.get(path)
        assert (r.status_code, r.json()) == (401, {"error": "API key expired"}), path
