"""The management API's keys and scopes against a real `shipyard server`, and the audit log
it writes: who, what, from where, with what outcome, and never a secret or a body."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from serve_support import open_registry
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, bearer, control_plane, module_database, ok, table_text

pytestmark = pytest.mark.slow

MISSING = {"error": "missing API key"}
INVALID = {"error": "invalid API key"}


@dataclass
class Api:
    server: ControlPlane
    database_url: str
    tokens: dict[str, str]  # scope -> token
    ids: dict[str, str]  # scope -> key id


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-auth")
    with module_database(request.param, root) as url:
        X, y = make_classification(100, 4, random_state=0)
        with open_registry(root / "home", url) as registry:
            model = LogisticRegression().fit(X.astype(np.float32), y)
            registry.register(model, "fraud", sample_input=X[:10].astype(np.float32))
        with control_plane(root / "home", url, root / "logs") as server:
            assert server.admin_token is not None
            tokens, ids = {"admin": server.admin_token}, {"admin": server.admin_token[3:15]}
            with server.client(server.admin_token) as admin:
                for scope in ("read", "predict", "deploy"):
                    created = ok(admin.post("/keys", json={"name": scope, "scopes": [scope]}), 201)
                    tokens[scope], ids[scope] = created["token"], created["key"]["id"]
            yield Api(server, url, tokens, ids)


def test_missing_and_invalid_keys_are_401(api: Api) -> None:
    admin = api.tokens["admin"]
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30) as http:
        for method, path in (("GET", "/models"), ("POST", "/deployments"), ("GET", "/audit")):
            r = http.request(method, path)
            assert r.status_code == 401 and r.json() == MISSING, path
        wrong_secret = admin[:16] + ("A" if admin[16] != "A" else "B") + admin[17:]
        for bad in ("nope", admin[:-1], admin + "x", wrong_secret, f"sy_{'0' * 12}_{admin[16:]}"):
            r = http.get("/models", headers=bearer(bad))
            assert r.status_code == 401 and r.json() == INVALID, bad
        r = http.get("/models", headers={"authorization": f"Basic {admin}"})
        assert r.status_code == 401 and r.json() == MISSING
        # A path that matches nothing is a 401 too until the caller shows a valid key.
        assert http.get("/nothing/here").status_code == 401
        assert http.get("/nothing/here", headers=bearer(admin)).status_code == 404
        # Nothing was created by the refused calls.
        assert ok(http.get("/deployments", headers=bearer(admin))) == []


def test_each_scope_boundary_is_403(api: Api) -> None:
    t = api.tokens
    deploy_body = {"name": "scoped", "model": "fraud:1"}
    feedback = [{"request_id": "r-scope-1", "value": 1}]
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30) as http:

        def status(method: str, path: str, scope: str, **kw: object) -> int:
            return http.request(method, path, headers=bearer(t[scope]), **kw).status_code  # type: ignore[arg-type]

        # read: browse, nothing else
        assert status("GET", "/models", "read") == 200
        assert status("GET", "/ledger", "read") == 200
        r = http.post("/deployments", json=deploy_body, headers=bearer(t["read"]))
        assert r.status_code == 403 and r.json() == {"error": "this key lacks the 'deploy' scope"}
        assert status("POST", "/feedback", "read", json=feedback) == 403
        assert status("GET", "/keys", "read") == 403
        assert status("GET", "/audit", "read") == 403
        # predict: feedback only; it cannot even browse the registry
        assert status("GET", "/models", "predict") == 403
        assert status("GET", "/deployments", "predict") == 403
        assert status("POST", "/deployments", "predict", json=deploy_body) == 403
        assert status("POST", "/feedback", "predict", json=feedback) == 200
        # deploy: read + change, but no keys, audit or feedback
        assert status("GET", "/models/fraud", "deploy") == 200
        assert status("POST", "/keys", "deploy", json={"name": "x", "scopes": ["admin"]}) == 403
        assert status("DELETE", f"/keys/{api.ids['read']}", "deploy") == 403
        assert status("GET", "/audit", "deploy") == 403
        assert status("POST", "/feedback", "deploy", json=feedback) == 403
        assert status("POST", "/deployments", "deploy", json=deploy_body) == 201
        # admin: everything
        assert status("GET", "/keys", "admin") == 200
        assert status("GET", "/audit", "admin") == 200
        # The refused key creation and revocation changed nothing.
        keys = ok(http.get("/keys", headers=bearer(t["admin"])))
        assert sorted(k["name"] for k in keys) == ["admin", "deploy", "predict", "read"]
        assert all(k["revoked_at"] is None for k in keys)


def test_a_revoked_key_is_refused(api: Api) -> None:
    with api.server.client(api.tokens["admin"]) as admin:
        created = ok(admin.post("/keys", json={"name": "temp", "scopes": ["read"]}), 201)
        token, key_id = created["token"], created["key"]["id"]
        assert ok(admin.get("/models", headers=bearer(token)))
        revoked = ok(admin.delete(f"/keys/{key_id}"))
        assert revoked["revoked_at"] is not None
        r = admin.get("/models", headers=bearer(token))
        assert r.status_code == 401 and r.json() == {"error": "API key revoked"}
        # A malformed id is refused by the schema, an unknown one is a 404.
        assert admin.delete("/keys/not-a-key").status_code == 422
        r = admin.delete(f"/keys/{'f' * 12}")
        assert r.status_code == 404 and "no API key" in r.json()["error"]


def test_the_audit_log_records_who_what_where_and_never_a_secret(api: Api) -> None:
    t = api.tokens
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30) as http:
        http.get("/models", headers=bearer(t["read"][:-2] + "zz"))  # 401
        http.get("/keys", headers=bearer(t["read"]))  # 403
        http.get("/models", headers=bearer(t["read"]))  # a read: not audited
        secret_body = {"name": "audited", "scopes": ["read"]}
        created = ok(http.post("/keys", json=secret_body, headers=bearer(t["admin"])), 201)
        http.post(
            "/deployments", json={"name": "aud", "model": "nope:1"}, headers=bearer(t["deploy"])
        )
        entries = ok(http.get("/audit", params={"limit": 1000}, headers=bearer(t["admin"])))
    newest = entries[:4][::-1]
    anonymous, forbidden, issued, refused = newest
    assert (anonymous["actor"], anonymous["action"], anonymous["status"]) == (
        "anonymous",
        "GET /api/v1/models",
        401,
    )
    assert anonymous["remote"] == "127.0.0.1" and anonymous["target"] == "/api/v1/models"
    assert forbidden["actor"] == f"key:{api.ids['read']} (read)"
    assert (forbidden["action"], forbidden["status"]) == ("GET /api/v1/keys", 403)
    assert issued["actor"] == f"key:{api.ids['admin']} (admin)"
    assert (issued["action"], issued["status"]) == ("POST /api/v1/keys", 201)
    assert refused["actor"] == f"key:{api.ids['deploy']} (deploy)"
    assert (refused["action"], refused["status"]) == ("POST /api/v1/deployments", 404)
    assert not any(e["action"] == "GET /api/v1/models" and e["status"] == 200 for e in entries)
    # Filters: by key (actor prefix), action and status.
    with api.server.client(t["admin"]) as admin:
        mine = ok(admin.get("/audit", params={"actor": f"key:{api.ids['deploy']}"}))
        assert mine and all(e["actor"].startswith(f"key:{api.ids['deploy']}") for e in mine)
        failed = ok(admin.get("/audit", params={"status": 401, "limit": 2}))
        assert len(failed) == 2 and all(e["status"] == 401 for e in failed)
        posts = ok(admin.get("/audit", params={"action": "POST /api/v1/keys"}))
        assert posts and {e["action"] for e in posts} == {"POST /api/v1/keys"}
        r = admin.get("/audit", params={"limit": 0})
        assert r.status_code == 422 and "limit" in r.json()["error"]
        r = admin.get("/audit", params={"since": "2026-01-01T00:00:00"})
        assert r.status_code == 400 and "timezone" in r.json()["error"]
    stored = table_text(api.database_url, "audit_log")
    for token in (*t.values(), created["token"]):
        assert token not in stored
        assert token[16:] not in stored  # not even the secret part
    assert "scopes" not in stored  # request bodies are not recorded
