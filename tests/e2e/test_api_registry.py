"""Registry endpoints of the management API against a real `shipyard server`: uploads (size
limit, pickle refusal, bad files), path tricks in names, aliases with compare-and-set, and
archiving a version a deployment routes to. Every refusal leaves the registry as it was."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, control_plane, module_database, ok

pytestmark = pytest.mark.slow

LIMIT_MB = 1


@dataclass
class Api:
    server: ControlPlane
    admin: str
    deploy: str
    skops: bytes
    pickle: bytes

    def client(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token or self.admin)


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-registry")
    X, y = make_classification(100, 4, random_state=0)
    model = LogisticRegression().fit(X.astype(np.float32), y)
    sio.dump(model, root / "model.skops")
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    with module_database(request.param, root) as url:
        args = ("--max-upload-mb", str(LIMIT_MB), "--no-controller")
        with control_plane(root / "home", url, root / "logs", *args) as server:
            assert server.admin_token is not None
            with server.client(server.admin_token) as admin:
                body = {"name": "deployer", "scopes": ["deploy"]}
                deploy = ok(admin.post("/keys", json=body), 201)["token"]
            skops = (root / "model.skops").read_bytes()
            yield Api(server, server.admin_token, deploy, skops, buffer.getvalue())


def _upload(
    http: httpx.Client, name: str, filename: str, content: bytes, **form: str
) -> httpx.Response:
    return http.post(f"/models/{name}/versions", files={"file": (filename, content)}, data=form)


def _model_names(api: Api) -> list[str]:
    with api.client() as http:
        return [m["name"] for m in ok(http.get("/models"))]


def test_upload_registers_a_version_as_the_calling_key(api: Api) -> None:
    with api.client(api.deploy) as http:
        version = ok(_upload(http, "up", "model.skops", api.skops, description="first"), 201)
        assert (version["ref"], version["status"], version["flavor"]) == (
            "up:1",
            "READY",
            "sklearn",
        )
        key_id = api.deploy[3:15]
        assert version["creator"] == f"key:{key_id}" and version["description"] == "first"
        assert ok(http.get("/models/up/versions/1")) == version
        assert [v["version"] for v in ok(http.get("/models/up/versions"))] == [1]
        entries = ok(http.get("/ledger", params={"model": "up"}))
        assert [(e["action"], e["actor"]) for e in entries][-1][1] == f"key:{key_id}"


def test_uploads_over_the_limit_are_413_and_store_nothing(api: Api) -> None:
    big = b"\0" * (LIMIT_MB * 1024 * 1024 + 1)
    before = _model_names(api)
    with api.client() as http:
        r = _upload(http, "huge", "model.skops", big)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n'
            for _ in range(LIMIT_MB * 16 + 1):
                yield b"\0" * 65536

        headers = {"content-type": "multipart/form-data; boundary=b"}
        r = http.post("/models/huge/versions", content=chunks(), headers=headers)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]
        # Other bodies have their own, smaller limit.
        r = http.post("/deployments", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                      headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 413
    assert _model_names(api) == before and "huge" not in before


def test_pickle_needs_an_admin_key_and_trust(api: Api) -> None:
    with api.client(api.deploy) as http:
        r = _upload(http, "pickled", "model.pkl", api.pickle)
        assert r.status_code == 412 and "trust" in r.json()["error"]
        r = _upload(http, "pickled", "model.pkl", api.pickle, trust="true")
        assert r.status_code == 403 and "admin" in r.json()["error"]
    with api.client() as admin:
        r = _upload(admin, "pickled", "model.pkl", api.pickle)
        assert r.status_code == 412
        assert "pickled" not in _model_names(api)
        version = ok(_upload(admin, "pickled", "model.pkl", api.pickle, trust="true"), 201)
        assert version["ref"] == "pickled:1"


def test_bad_uploads_are_refused_before_anything_is_stored(api: Api) -> None:
    before = _model_names(api)
    with api.client() as http:
        r = _upload(http, "bad", "model.onnx", b"not a model")
        assert r.status_code == 400 and "ONNX" in r.json()["error"]
        r = _upload(http, "bad", "model.weird", api.skops)
        assert r.status_code == 400 and "cannot tell the format" in r.json()["error"]
        r = _upload(http, "bad", "model.skops", api.skops, flavor="nope")
        assert r.status_code == 400 and "unknown flavor 'nope'" in r.json()["error"]
        r = http.post("/models/bad/versions", data={"flavor": "auto"})
        assert r.status_code == 422 and "file" in r.json()["error"]
        # The client's file name never reaches the file system.
        r = _upload(http, "bad", "../../../etc/passwd", b"x")
        assert r.status_code == 400
    assert _model_names(api) == before


def test_path_tricks_in_names_are_refused(api: Api) -> None:
    before = _model_names(api)
    with api.client() as http:
        for name in ("%2e%2e", "a..b", "x" * 300, "%00x", "-x"):
            r = _upload(http, name, "model.skops", api.skops)
            assert r.status_code == 400, (name, r.text)
            assert http.get(f"/models/{name}").status_code == 400, name
        for name in ("..", "../x", "..%2fx", "%2e%2e%2fx", "a%2Fb"):  # no such route
            assert _upload(http, name, "model.skops", api.skops).status_code == 404, name
        r = http.put("/models/%2e%2e/aliases/prod", json={"version": 1})
        assert r.status_code == 400
        r = http.post("/deployments", json={"name": "../x", "model": "up:1"})
        assert r.status_code == 400 and "must not contain" in r.json()["error"]
        assert ok(http.get("/deployments")) == [] or all(
            d["name"] != "../x" for d in ok(http.get("/deployments"))
        )
    assert _model_names(api) == before


def test_aliases_compare_and_set(api: Api) -> None:
    with api.client() as http:
        ok(_upload(http, "al", "model.skops", api.skops), 201)
        ok(_upload(http, "al", "model.skops", api.skops), 201)
        move = ok(http.put("/models/al/aliases/prod", json={"version": 1, "reason": "go"}))
        assert (move["alias"], move["version"], move["previous"]) == ("prod", 1, None)
        r = http.put("/models/al/aliases/prod", json={"version": 2, "expected": 2})
        assert r.status_code == 409 and "points at 1, expected 2" in r.json()["error"]
        r = http.put("/models/al/aliases/prod", json={"version": 2, "expected": None})
        assert r.status_code == 409
        r = http.delete("/models/al/aliases/prod", params={"expected": 2})
        assert r.status_code == 409
        r = http.put("/models/al/aliases/prod", json={"version": 9})
        assert r.status_code == 404
        r = http.put("/models/al/aliases/prod", json={"version": 0})
        assert r.status_code == 422 and "version" in r.json()["error"]
        assert ok(http.get("/models/al"))["aliases"] == {"prod": 1}
        ok(http.put("/models/al/aliases/prod", json={"version": 2, "expected": 1}))
        gone = ok(http.delete("/models/al/aliases/prod", params={"expected": 2}))
        assert (gone["version"], gone["previous"]) == (None, 2)
        assert ok(http.get("/models/al"))["aliases"] == {}


def test_archiving_a_version_a_deployment_routes_to_is_412(api: Api) -> None:
    with api.client() as http:
        ok(_upload(http, "arch", "model.skops", api.skops), 201)
        ok(_upload(http, "arch", "model.skops", api.skops), 201)
        ok(http.post("/deployments", json={"name": "arch-live", "model": "arch:2"}), 201)
        r = http.post("/models/arch/versions/2/archive", json={"reason": "old"})
        assert r.status_code == 412 and "served by deployment arch-live" in r.json()["error"]
        assert ok(http.get("/models/arch/versions/2"))["archived"] is False
        archived = ok(http.post("/models/arch/versions/1/archive"))
        assert archived["archived"] is True
        assert http.post("/models/arch/versions/7/archive").status_code == 404
